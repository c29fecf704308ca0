"""A producer in a second language: the Go example passes the published vectors and sends a proposal,
signed with the agent's own key over SASL/SCRAM, that the real validator accepts into the ledger."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from connectors.kafka_admin import delete_topics, ensure_topics
from connectors.kafka_io import send_proposals
from connectors.migrate import apply_migrations
from core import agent_keys
from core.config import REPO_ROOT, Settings
from streams.validator import open_validator
from streams.workload import Workload
from tests.conftest import grid_settings, temporary_database

PRODUCER_DIR = REPO_ROOT / "examples" / "go-producer"
SECRET = bytes(range(32))  # one of the secrets whose synthetic operator founds test ledgers
GO_TIMEOUT_S = 300  # the first build compiles franz-go; later ones come from Go's build cache


def go(*args: str, cwd: Path = PRODUCER_DIR, stdin: bytes | None = None) -> str:
    executable = shutil.which("go")
    assert executable, "Go is needed for this test (the machine's toolchain; see docs/producers.md)"
    done = subprocess.run(
        [executable, *args], cwd=cwd, input=stdin, capture_output=True, timeout=GO_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()[-3000:]
    return done.stdout.decode()


@pytest.fixture(scope="module")
def producer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("go") / "go-producer"
    go("build", "-o", str(binary), ".")
    return binary


@pytest.fixture
def grid(kafka_bootstrap: str, database_url: str) -> Iterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with temporary_database(database_url) as url:
        apply_migrations(url)
        settings = grid_settings(kafka_bootstrap, url, prefix)
        ensure_topics(settings)
        try:
            yield settings
        finally:
            delete_topics(settings, prefix)


def test_the_go_code_passes_the_published_vectors(producer: Path) -> None:
    go("test", "./...")
    printed = subprocess.run(
        [str(producer), "vectors", str(REPO_ROOT / "schemas" / "vectors" / "proposals.json")],
        capture_output=True, check=True, timeout=30,
    ).stdout.decode()  # fmt: skip
    assert "canonical bytes and signatures match" in printed


def test_a_go_proposal_is_accepted_into_the_ledger(producer: Path, grid: Settings, tmp_path: Path) -> None:
    workload = Workload(SECRET, agent_count=3, seed=5, run_id="go")
    send_proposals(grid, [workload.genesis()])
    agent, to_agent = workload.agents[0], workload.agents[1]
    envelope = {
        "v": 1, "id": "go-transfer-1", "agent": agent, "nonce": workload.next_nonce(agent), "tick": 0,
        "expires_tick": 10,
        "body": {"kind": "transfer", "from_account": f"{agent}:main", "to_account": f"{to_agent}:main",
                 "resource": "energy", "quantity": 321, "memo": "sent from Go · ünïcode"},
    }  # fmt: skip
    access = grid.kafka("producer")  # the participants' Kafka identity: it may write proposals only
    flags = ["-bootstrap", grid.kafka_bootstrap, "-topic", grid.topic("proposals")]
    key_file = tmp_path / f"{agent}.g0.key"
    agent_keys.write(key_file, agent_keys.issue(SECRET, agent))  # what `gridgov keys issue` writes
    flags += ["-key-file", str(key_file)]  # the agent's own key, nothing more
    if access.username is not None:
        (tmp_path / "kafka-producer").write_text(access.password or "")
        flags += ["-user", access.username, "-password-file", str(tmp_path / "kafka-producer")]
    sent = subprocess.run(
        [str(producer), "send", *flags], input=orjson.dumps(envelope), capture_output=True, timeout=60, check=False
    )
    assert sent.returncode == 0, sent.stderr.decode()
    assert "sent go-transfer-1" in sent.stdout.decode()

    open_validator(grid, SECRET, version="test-law").run(threading.Event(), idle_exit_s=1.0)
    with psycopg.connect(grid.database_url) as conn:
        row = conn.execute(
            "SELECT seq, kind, agent, proposal_json FROM ledger WHERE proposal_id = %s", ("go-transfer-1",)
        ).fetchone()
        rejected = conn.execute("SELECT count(*) FROM rejections").fetchone()
    assert row is not None, "the Go proposal is not in the ledger"
    assert row[1:3] == ("transfer", agent) and "sent from Go" in row[3]
    assert rejected == (0,)
