"""Replay against the real broker and database: the same law reproduces the live head hash exactly, a
changed rule reports exactly the proposals it flips, and resetting the live group's offsets with
Kafka's own ConsumerGroupCommand applies nothing twice."""

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
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from connectors.kafka_admin import admin_client
from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import audit_database
from core.config import REPO_ROOT, Settings
from core.kafka_access import properties_path
from gridgov.infra.kafka import libs_dir
from law.policy import DEFAULT_POLICY
from streams.replay import replay
from streams.validator import GROUP_ID_DEFAULT, open_validator
from streams.workload import Workload
from tests.conftest import temporary_database
from tests.integration.test_recovery import cli
from tests.integration.test_validator import SECRET, VERSION, settings, stored
from tests.support.fold import Expected, fold

__all__ = ["settings"]  # the fixture, re-used

AGENT_COUNT = 8
CAP_CHANGED = 500  # the counterfactual rule: energy trades above 500 units are POLICY_CAP
PACKAGES = ("agents", "connectors", "core", "gridgov", "law", "schemas", "streams")
TOOL_TIMEOUT_S = 60


def run_live(settings: Settings, messages: list[bytes]) -> None:
    send_proposals(settings, messages)
    open_validator(settings, SECRET, version=VERSION).run(threading.Event(), idle_exit_s=1.0)


def workload(count: int, seed: int) -> tuple[Workload, list[bytes]]:
    w = Workload(SECRET, agent_count=AGENT_COUNT, seed=seed)
    return w, [w.genesis()] + [m.raw for m in w.messages(count)]


def head(url: str, below_offset: int) -> tuple[int, bytes]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT seq, hash FROM ledger WHERE source_offset < %s ORDER BY seq DESC LIMIT 1", (below_offset,)
        ).fetchone()
    assert row is not None
    return row[0], bytes(row[1])


def test_replay_into_a_fresh_database_reproduces_the_live_head_hash(
    settings: Settings, empty_database: str, database_url: str
) -> None:
    _, messages = workload(2_000, seed=31)
    run_live(settings, messages)
    send_proposals(settings, [m.raw for m in Workload(SECRET, AGENT_COUNT, 32, "late").messages(50)])  # not yet decided

    result = replay(settings, empty_database, SECRET, VERSION)

    assert result.to_offset == len(messages)  # the live position, not the topic's end
    assert result.comparison is not None and result.comparison.identical, result.comparison
    assert result.comparison.replay_head == head(settings.database_url, len(messages))
    assert stored(settings) == stored_at(empty_database)
    assert audit_database(empty_database).ok

    bound = 1_000
    with temporary_database(database_url) as partial:
        done = cli(
            settings, "replay", "--into", partial, "--to-offset", str(bound), env={"GRID_VALIDATOR_VERSION": VERSION}
        )
    assert done.returncode == 0, done.stderr[-2000:]
    seq, entry_hash = head(settings.database_url, bound)
    assert f"identical: head seq {seq} hash {entry_hash.hex()}" in done.stdout

    with temporary_database(database_url) as restamped:
        done = cli(
            settings, "replay", "--into", restamped, "--to-offset", "300", env={"GRID_VALIDATOR_VERSION": "other"}
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"from seq 0 the live ledger is stamped {VERSION!r} and this code is 'other'" in done.stdout


def stored_at(url: str) -> tuple[list[tuple[int, bytes]], dict[int, str]]:
    with psycopg.connect(url) as conn:
        entries = [(s, bytes(h)) for s, h in conn.execute("SELECT seq, hash FROM ledger ORDER BY seq")]
        rejections = dict(conn.execute("SELECT source_offset, reason_code FROM rejections").fetchall())
    return entries, rejections


@pytest.fixture
def changed_law(tmp_path: Path) -> Iterator[str]:
    """A throwaway commit: this checkout's code with one rule changed. Branch and worktree go afterwards."""
    branch = f"test-law-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "changed-law"
    git = ["git", "-C", str(REPO_ROOT)]
    subprocess.run([*git, "worktree", "add", "-q", "-b", branch, str(path), "HEAD"], check=True)
    try:
        for package in PACKAGES:  # the code under test, committed or not: only the rule below differs
            shutil.copytree(
                REPO_ROOT / package, path / package, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        policy = path / "law" / "policy.py"
        text = policy.read_text()
        assert '"trade_quantity_max_energy": 10**12,' in text
        policy.write_text(
            text.replace('"trade_quantity_max_energy": 10**12,', f'"trade_quantity_max_energy": {CAP_CHANGED},')
        )
        commit = ["git", "-C", str(path), "-c", "user.name=test", "-c", "user.email=test@localhost"]
        subprocess.run([*commit, "add", "-A"], check=True)
        subprocess.run([*commit, "commit", "-q", "--no-verify", "-m", "test: lower the energy trade cap"], check=True)
        rev = subprocess.run([*commit, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=True)
    try:
        yield rev
    finally:
        subprocess.run([*git, "branch", "-D", "-q", branch], check=True)


def expected_under_changed_rule(messages: list[bytes], monkeypatch: pytest.MonkeyPatch) -> Expected:
    with monkeypatch.context() as m:
        m.setitem(DEFAULT_POLICY, "trade_quantity_max_energy", CAP_CHANGED)
        return fold(messages, SECRET, VERSION)


def test_a_replay_under_a_changed_rule_reports_exactly_the_flipped_proposals(
    settings: Settings, empty_database: str, changed_law: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, messages = workload(1_500, seed=33)
    run_live(settings, messages)
    live = fold(messages, SECRET, VERSION)
    other = expected_under_changed_rule(messages, monkeypatch)
    accepted_live = {e.source_offset for e in live.entries}
    accepted_other = {e.source_offset for e in other.entries}
    flipped = accepted_live ^ accepted_other
    assert len(flipped) > 10  # the workload does trade more than 500 units at times

    done = cli(settings, "replay", "--into", empty_database, "--law", changed_law)

    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(settings.database_url) as conn:
        (report_json,) = conn.execute(
            "SELECT report_json FROM replay_runs WHERE kind = 'counterfactual' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    report = orjson.loads(report_json)
    assert report["law"] == changed_law
    assert {f[0] for f in report["flips"]} == flipped
    for offset, _, live_verdict, _, other_verdict, other_detail in report["flips"]:
        want = "ACCEPTED" if offset in accepted_other else other.rejections[offset]
        assert (live_verdict == "ACCEPTED", other_verdict) == (offset in accepted_live, want)
        if other_verdict == "POLICY_CAP":
            assert f"cap {CAP_CHANGED}" in other_detail
    assert f"flipped between accepted and rejected: {len(flipped)}" in done.stdout
    expected_balances = {
        (a, r): (live.state.balance(a, r), other.state.balance(a, r))
        for (a, r) in set(live.state.balances) | set(other.state.balances)
        if live.state.balance(a, r) != other.state.balance(a, r)
    }
    assert {(b[1], b[2]): (b[3], b[4]) for b in report["balance_differences"]} == expected_balances
    with psycopg.connect(empty_database) as conn:
        versions = {v for (v,) in conn.execute("SELECT DISTINCT validator_version FROM ledger")}
    assert versions == {changed_law[:12]}  # stamped by the revision that decided, not by this checkout


def committed_offset(settings: Settings, group: str) -> int:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(settings.topic("proposals"), 0)])
    admin = admin_client(settings.kafka("admin"))
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=TOOL_TIMEOUT_S)
    return int(result.topic_partitions[0].offset)


def consumer_group_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Kafka's own kafka-consumer-groups tool, run from the broker's jars."""
    libs = libs_dir(settings)
    java = shutil.which("java")
    if java is None or not any(libs.glob("kafka-tools-*.jar")):
        pytest.skip(f"Kafka's tools jar is not in {libs} (the broker was not installed by gridgov infra)")
    cmd = [java, "-Xmx256m", "-cp", f"{libs}/*", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"]
    cmd += ["--bootstrap-server", settings.kafka_bootstrap, *args]
    if settings.kafka_sasl:  # the broker's admin, as docs/replay.md tells an operator to log in
        cmd += ["--command-config", str(properties_path(settings.home, "admin"))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


def test_resetting_the_live_group_to_earliest_applies_nothing_twice(settings: Settings) -> None:
    w, first = workload(1_000, seed=35)
    run_live(settings, first)
    assert committed_offset(settings, GROUP_ID_DEFAULT) == len(first)

    done = consumer_group_command(
        settings, "--group", GROUP_ID_DEFAULT, "--topic", settings.topic("proposals"),
        "--reset-offsets", "--to-earliest", "--execute",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert committed_offset(settings, GROUP_ID_DEFAULT) == 0

    second = [m.raw for m in w.messages(500)]
    run_live(settings, second)
    again = cli(settings, "replay", "--reset-group", GROUP_ID_DEFAULT, "--to-earliest")
    assert again.returncode == 0, again.stderr
    assert committed_offset(settings, GROUP_ID_DEFAULT) == 0
    open_validator(settings, SECRET, version=VERSION).run(threading.Event(), idle_exit_s=1.0)

    expected = fold(first + second, SECRET, VERSION)
    entries, rejections = stored(settings)
    assert entries == [(e.seq, e.hash) for e in expected.entries]
    assert len(entries) + len(rejections) == len(first) + len(second)
    assert audit_database(settings.database_url).ok
