"""SIGKILL the validator at random points of a 50k-proposal run; the ledger must still equal the pure fold."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import audit_database
from core.config import Settings
from streams.workload import Workload
from tests.integration.test_validator import SECRET, VERSION, consume_keys, settings, stored
from tests.support.fold import fold

__all__ = ["settings"]  # the fixture, re-used

PROPOSAL_COUNT = 50_000
KILL_COUNT = 6
FINISH_TIMEOUT_S = 240


def validator_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GRID_TOPIC_PREFIX": settings.topic_prefix,
        "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "GRID_DATABASE_URL": settings.database_url,
        "GRID_KEY_SECRET": SECRET.hex(),
        "GRID_FOUNDING_OPERATORS": settings.founding_operators or "",
        "GRID_VALIDATOR_VERSION": VERSION,
        "GRID_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "gridgov.cli", "validator", "--metrics-port", "0", "--idle-exit-s", "3"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sink)


def decided_count(settings: Settings) -> int:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT coalesce(max(next_offset), 0) FROM consumer_position").fetchone()
    return int(row[0]) if row else 0


def test_sigkill_at_random_points_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "validator.log"
    w = Workload(SECRET, agent_count=20, seed=11)
    messages = [w.genesis()] + [m.raw for m in w.messages(PROPOSAL_COUNT)]
    send_proposals(settings, messages)
    rng = random.Random(7)
    kills = 0
    while kills < KILL_COUNT and decided_count(settings) < len(messages):
        proc = validator_process(settings, log)
        time.sleep(rng.uniform(0.5, 4.0))  # a random instant: start-up, fold, mid-batch or mid-commit
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    final = validator_process(settings, log)
    assert final.wait(timeout=FINISH_TIMEOUT_S) == 0, log.read_text()[-2000:]
    assert kills >= 3, "the run finished before the validator could be killed often enough"

    expected = fold(messages, SECRET, VERSION)
    entries, rejections = stored(settings)
    assert entries == [(e.seq, e.hash) for e in expected.entries]  # none lost, none duplicated, same chain
    assert rejections == expected.rejections
    report = audit_database(settings.database_url)
    assert report.ok, report.problems[:5]
    assert consume_keys(settings, "rejections", len(rejections), timeout_s=60) == {f"rej:{o}" for o in rejections}
