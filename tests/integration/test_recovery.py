"""Rehydration against a ledger built by the real validator: tampering is found at its exact seq,
recorded and alerted; T=0 and checkpoints give the same state; a corrupt checkpoint is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import msgspec
import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors import checkpoints
from connectors.kafka_io import send_proposals
from connectors.ledger_store import LedgerStore
from connectors.readmodel.ledger import PgLedgerReader, audit_database
from core.audit import CHECKPOINT_SEQ_ANY, checkpoint_hash, rebuild_state
from core.config import Settings
from core.identities import validator_signer
from law.ledger import recompute_hash
from schemas.records import AlertRecord, IncidentRecord
from streams.rehydrate import rehydrate
from streams.validator import open_validator
from streams.workload import Workload
from tests.integration.test_validator import SECRET, VERSION, settings
from tests.support.fold import fold, workload_keyring

__all__ = ["settings"]  # the fixture, re-used

CHECKPOINT_EVERY = 500
BATCH_COUNT = 200  # small batches, so the run crosses several checkpoint boundaries
CLI_TIMEOUT_S = 60


@pytest.fixture
def built(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """A ledger of ~2,500 entries with checkpoints, built by the real validator; returns the messages."""
    monkeypatch.setattr(checkpoints, "checkpoint_every", lambda: CHECKPOINT_EVERY)
    w = Workload(SECRET, agent_count=10, seed=21)
    messages = [w.genesis()] + [m.raw for m in w.messages(3_000)]
    send_proposals(settings, messages)
    validator = open_validator(settings, SECRET, version=VERSION, batch_count_max=BATCH_COUNT)
    validator.run(threading.Event(), idle_exit_s=1.0)
    return messages


def cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``gridgov ARGS`` in its own process, configured for this test's database, topics and key secret."""
    env = {
        **os.environ,
        "GRID_DATABASE_URL": settings.database_url,
        "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "GRID_TOPIC_PREFIX": settings.topic_prefix,
        "GRID_KEY_SECRET": SECRET.hex(),
        "GRID_FOUNDING_OPERATORS": settings.founding_operators or "",
        "GRID_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "gridgov.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def sql(settings: Settings, *statements: str) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def tamper(settings: Settings, table: str, *statements: str) -> None:
    """What an attacker with superuser rights does: disable the append-only trigger, edit, re-enable."""
    trigger = f"{table}_append_only"
    sql(
        settings,
        f"ALTER TABLE {table} DISABLE TRIGGER {trigger}",
        *statements,
        f"ALTER TABLE {table} ENABLE TRIGGER {trigger}",
    )


def first_transfer_seq(settings: Settings, after_seq: int) -> int:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT min(seq) FROM ledger WHERE kind = 'transfer' AND seq > %s", (after_seq,)).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def record_value(settings: Settings, topic: str, key: str, timeout_s: float = 20.0) -> bytes:
    """The value of the first record under ``key`` on a grid topic, polled until it arrives."""
    consumer = Consumer(settings.kafka("admin").config(**{"group.id": "check-values"}))
    consumer.assign([TopicPartition(settings.topic(topic), 0, 0)])
    try:
        for _ in range(int(timeout_s / 0.5)):
            for m in consumer.consume(num_messages=1_000, timeout=0.5):
                if m.error() is None and m.key() == key.encode():
                    return bytes(m.value())
    finally:
        consumer.close()
    raise AssertionError(f"no record {key} on {topic}")


def test_a_tampered_posting_is_named_by_seq_and_reason_recorded_and_alerted(
    settings: Settings, built: list[bytes]
) -> None:
    seq = first_transfer_seq(settings, 1_000)
    tamper(settings, "postings", f"UPDATE postings SET amount = amount + 1000000 WHERE seq = {seq} AND idx = 1")

    report = audit_database(settings.database_url)
    assert {(p.where, p.reason) for p in report.problems if p.where.startswith("seq")} == {
        (f"seq {seq}", "HASH_MISMATCH"),
        (f"seq {seq}", "NOT_CONSERVED"),
    }
    verify_cli = cli(settings, "verify")
    assert verify_cli.returncode == 1
    assert f"MISMATCH seq {seq}: HASH_MISMATCH" in verify_cli.stdout

    done = cli(settings, "rehydrate", "--no-progress")
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"ANOMALY seq {seq}: HASH_MISMATCH" in done.stdout
    assert f"ANOMALY seq {seq}: NOT_CONSERVED" in done.stdout
    assert "DIFFERENCE world_state energy@" in done.stdout  # the skipped entry's effect on the cache

    with psycopg.connect(settings.database_url) as conn:
        run_id, ok, anomalies = conn.execute(
            "SELECT run_id, ok, anomalies FROM replay_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        recorded = conn.execute("SELECT seq, reason FROM replay_anomalies WHERE run_id = %s", (run_id,)).fetchall()
    assert (ok, anomalies) == (False, 2)
    assert sorted(recorded) == [(seq, "HASH_MISMATCH"), (seq, "NOT_CONSERVED")]

    alert_id = f"anomaly:{run_id}:{seq}"
    alert = AlertRecord.model_validate_json(record_value(settings, "alerts", alert_id))
    assert (alert.kind, alert.severity, alert.seq) == ("replay_anomaly", "critical", seq)
    incident = IncidentRecord.model_validate_json(record_value(settings, "incidents", alert_id))
    assert (incident.kind, incident.seq) == ("replay_anomaly", seq)


def test_a_deleted_entry_is_one_gap_and_its_postings_orphans_not_a_cascade(
    settings: Settings, built: list[bytes]
) -> None:
    seq = first_transfer_seq(settings, 1_000)
    tamper(settings, "ledger", f"DELETE FROM ledger WHERE seq = {seq}")
    found = {(p.where, p.reason) for p in audit_database(settings.database_url).problems if p.where.startswith("seq")}
    assert {
        (f"seq {seq + 1}", "SEQ_GAP"),
        (f"seq {seq + 1}", "CHAIN_BROKEN"),
        (f"seq {seq}", "ORPHAN_POSTINGS"),
    } <= found
    # Later entries that depended on the skipped one are named too, each once; nothing crashes.
    assert {reason for _, reason in found} <= {"SEQ_GAP", "CHAIN_BROKEN", "ORPHAN_POSTINGS", "FOLD_INCONSISTENT"}
    done = cli(settings, "rehydrate", "--no-progress")
    assert done.returncode == 1 and f"ANOMALY seq {seq + 1}: SEQ_GAP" in done.stdout, done.stderr[-2000:]


def test_t0_and_every_checkpoint_give_the_same_state_as_the_pure_fold(settings: Settings, built: list[bytes]) -> None:
    expected = fold(built, SECRET, VERSION).state
    seqs = checkpoint_seqs(settings)
    assert len(seqs) >= 3, seqs

    from_zero = rehydrate(settings, None, progress=False)
    latest = rehydrate(settings, "latest", progress=False)
    middle = rehydrate(settings, seqs[1], progress=False)

    assert from_zero.ok and latest.ok and middle.ok, (from_zero.anomalies, from_zero.differences[:5])
    assert (latest.start.checkpoint_seq, middle.start.checkpoint_seq) == (seqs[-1], seqs[1])
    assert from_zero.state == latest.state == middle.state == expected
    assert latest.entries == from_zero.entries - seqs[-1] - 1


def test_a_corrupt_checkpoint_is_skipped_for_an_earlier_one(settings: Settings, built: list[bytes]) -> None:
    seqs = checkpoint_seqs(settings)
    sql(
        settings,
        f"UPDATE checkpoints SET state_json = replace(state_json, '\"tick\":', '\"tick\": ') WHERE seq = {seqs[-1]}",
    )

    report = rehydrate(settings, "latest", progress=False)

    assert report.start.checkpoint_seq == seqs[-2]
    assert [(a.seq, a.reason) for a in report.anomalies] == [(seqs[-1], "CHECKPOINT_CORRUPT")]
    assert report.difference_count == 0
    assert report.state == rehydrate(settings, None, progress=False).state


def test_the_validator_starts_from_the_newest_intact_checkpoint(settings: Settings, built: list[bytes]) -> None:
    seqs = checkpoint_seqs(settings)
    sql(settings, f"UPDATE checkpoints SET hash = sha256(hash) WHERE seq = {seqs[-1]}")
    signer = validator_signer(settings.home)
    store = LedgerStore(settings.database_url, "check", settings.topic("proposals"), signer)
    skipped: list[tuple[int, str]] = []
    try:
        state, start = rebuild_state(
            store.reader, lambda c, reason, _: skipped.append((c.seq, reason)), signer.public_key
        )
        assert (start.checkpoint_seq, skipped) == (seqs[-2], [(seqs[-1], "CHECKPOINT_CORRUPT")])
        expected = fold(built, SECRET, VERSION)
        assert state == expected.state
        assert store.fold() == expected.state
    finally:
        store.close()


def test_a_forged_checkpoint_with_a_valid_hash_is_refused_at_start_up_and_by_rehydrate(
    settings: Settings, built: list[bytes]
) -> None:
    seqs = checkpoint_seqs(settings)
    seq = seqs[-1]
    with psycopg.connect(settings.database_url) as conn:
        ledger_hash, next_offset, text = conn.execute(
            "SELECT ledger_hash, next_offset, state_json FROM checkpoints WHERE seq = %s", (seq,)
        ).fetchone()
        state = orjson.loads(text)
        state["balances"][-1][2] += 1  # one unit more for someone, and a hash recomputed to match
        forged = orjson.dumps(state, option=orjson.OPT_SORT_KEYS).decode()
        conn.execute(
            "UPDATE checkpoints SET state_json = %s, hash = %s WHERE seq = %s",
            (forged, checkpoint_hash(bytes(ledger_hash), next_offset, forged), seq),
        )

    report = rehydrate(settings, None, progress=False)
    assert [(a.seq, a.reason) for a in report.anomalies] == [(seq, "CHECKPOINT_FORGED")]

    signer = validator_signer(settings.home)
    store = LedgerStore(settings.database_url, "check", settings.topic("proposals"), signer)
    skipped: list[tuple[int, str]] = []
    try:
        state, start = rebuild_state(
            store.reader, lambda c, reason, _: skipped.append((c.seq, reason)), signer.public_key
        )
        assert (start.checkpoint_seq, skipped) == (seqs[-2], [(seq, "CHECKPOINT_FORGED")])
        assert state == fold(built, SECRET, VERSION).state
    finally:
        store.close()


def checkpoint_seqs(settings: Settings) -> list[int]:
    with psycopg.connect(settings.database_url) as conn:
        return [s for (s,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")]


@pytest.mark.parametrize("rewritten", ["postings", "proposal"])
def test_an_entry_rewritten_with_every_later_hash_recomputed_is_named_by_verify(
    settings: Settings, built: list[bytes], rewritten: str
) -> None:
    """A forger who owns the tables moves 900,000 units instead of the transfer's few and recomputes the
    chain from there on: the hashes all check, but re-deciding the stored proposal names the seq."""
    seq = first_transfer_seq(settings, 1_000)
    forge_from(settings, seq, rewritten)
    chain_only = audit_database(settings.database_url)
    assert not [p for p in chain_only.problems if p.where.startswith("seq")], "the chain alone no longer tells"

    report = audit_database(settings.database_url, workload_keyring(SECRET))
    assert [(p.where, p.reason) for p in report.problems if p.where.startswith("seq")] == [
        (f"seq {seq}", "DECISION_MISMATCH")
    ]
    done = cli(settings, "verify")
    assert done.returncode == 1 and f"MISMATCH seq {seq}: DECISION_MISMATCH" in done.stdout
    expected = "BAD_SIGNATURE" if rewritten == "proposal" else "is not what the law decides"
    assert expected in done.stdout


def forge_from(settings: Settings, seq: int, rewritten: str) -> None:
    """Entry ``seq`` moves 900,000 units (its proposal too, if ``rewritten`` says so); it and every later
    entry get hashes recomputed to match, as the table's owner can write them."""
    forged_quantity = 900_000
    with psycopg.connect(settings.database_url) as conn:
        entries = list(PgLedgerReader(conn, settings.database_url).entries(seq, CHECKPOINT_SEQ_ANY))
    first = entries[0]
    postings = tuple((a, r, forged_quantity if q > 0 else -forged_quantity) for a, r, q in first.postings)
    proposal_json = first.proposal_json
    if rewritten == "proposal":
        proposal = orjson.loads(proposal_json)
        proposal["body"]["quantity"] = forged_quantity
        proposal_json = orjson.dumps(proposal, option=orjson.OPT_SORT_KEYS).decode()
    prev_hash, rows = first.prev_hash, []
    for entry in [msgspec.structs.replace(first, postings=postings, proposal_json=proposal_json), *entries[1:]]:
        entry = msgspec.structs.replace(entry, prev_hash=prev_hash)
        entry = msgspec.structs.replace(entry, hash=recompute_hash(entry))
        rows.append((entry.proposal_json, entry.prev_hash, entry.hash, entry.seq))
        prev_hash = entry.hash
    statements = [f"UPDATE postings SET amount = sign(amount) * {forged_quantity} WHERE seq = {seq}"]
    tamper(settings, "postings", *statements)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_append_only")
        conn.cursor().executemany(
            "UPDATE ledger SET proposal_json = %s, prev_hash = %s, hash = %s WHERE seq = %s", rows
        )
        conn.execute("ALTER TABLE ledger ENABLE TRIGGER ledger_append_only")
