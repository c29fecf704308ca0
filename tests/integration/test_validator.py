"""The validator against the real broker and database: exact ledger, exact rejections, immutability."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer

from connectors.kafka_admin import ensure_topics
from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import audit_database
from core import agent_keys
from core.config import Settings
from core.pg_access import with_role
from schemas.codec import encode
from schemas.envelope import build
from streams.validator import open_validator
from streams.workload import Workload
from tests.conftest import grid_settings
from tests.support.fold import fold

SECRET = bytes(range(32))
VERSION = "test-law"


@pytest.fixture
def settings(kafka_bootstrap: str, fresh_database: str, topic_prefix: str) -> Iterator[Settings]:
    s = grid_settings(kafka_bootstrap, fresh_database, topic_prefix)
    ensure_topics(s)
    yield s


def run_validator(settings: Settings) -> None:
    open_validator(settings, SECRET, version=VERSION).run(threading.Event(), idle_exit_s=1.0)


def stored(settings: Settings) -> tuple[list[tuple[int, bytes]], dict[int, str]]:
    with psycopg.connect(settings.database_url) as conn:
        entries = [(s, bytes(h)) for s, h in conn.execute("SELECT seq, hash FROM ledger ORDER BY seq")]
        rejections = dict(conn.execute("SELECT source_offset, reason_code FROM rejections").fetchall())
    return entries, rejections


def hostile() -> list[bytes]:
    w = Workload(SECRET, agent_count=3, seed=9, run_id="h")
    base = orjson.loads(next(m.raw for m in w.messages(5) if m.expect == "ACCEPTED"))
    return [
        b"\xff\xfe not json",
        b"{" + b" " * 1_000_000 + b"}",  # a 1 MB message
        orjson.dumps({**base, "unknown": 1}),
        orjson.dumps({**base, "body": {**base["body"], "quantity": 2**63}}),
        orjson.dumps({**base, "body": {**base["body"], "quantity": -5}}),
        orjson.dumps({**base, "body": {**base["body"], "quantity": 1.0}}),
        b'{"v":1,"quantity":NaN}',
        b"",
        b'{"id":"\\u0000evil","agent":"a\\u0000","\\u0000":1}',  # NUL would poison a Postgres text column
        orjson.dumps({**base, "\x00": 1}),
    ]


def test_mixed_stream_ends_in_exactly_the_expected_ledger_and_rejections(settings: Settings) -> None:
    w = Workload(SECRET, agent_count=10, seed=3)
    messages = [w.genesis()] + [m.raw for m in w.messages(3_000)] + hostile()
    send_proposals(settings, messages)
    run_validator(settings)

    expected = fold(messages, SECRET, VERSION)
    entries, rejections = stored(settings)
    assert entries == [(e.seq, e.hash) for e in expected.entries]
    assert rejections == expected.rejections
    assert len(entries) + len(rejections) == len(messages)
    assert {rejections[o] for o in range(len(messages) - 10, len(messages))} == {"MALFORMED", "LIMIT_EXCEEDED"}
    report = audit_database(settings.database_url)
    assert report.ok, report.problems


def test_every_rejection_and_entry_is_published(settings: Settings) -> None:
    w = Workload(SECRET, agent_count=5, seed=4)
    messages = [w.genesis()] + [m.raw for m in w.messages(500)]
    send_proposals(settings, messages)
    run_validator(settings)
    entries, rejections = stored(settings)

    keys = consume_keys(settings, "rejections", len(rejections))
    assert keys == {f"rej:{o}" for o in rejections}
    events = consume_keys(settings, "ledger-events", len(entries))
    assert len(events) == len(entries)


def consume_keys(settings: Settings, topic: str, count: int, timeout_s: float = 20.0) -> set[str]:
    consumer = Consumer(
        settings.kafka("admin").config(
            **{"group.id": f"check-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    consumer.subscribe([settings.topic(topic)])
    keys: set[str] = set()
    try:
        for _ in range(int(timeout_s / 0.5)):
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is None:
                    keys.add(msg.key().decode())
            if len(keys) >= count:
                break
    finally:
        consumer.close()
    return keys


def test_redelivery_and_restart_never_apply_twice(settings: Settings) -> None:
    w = Workload(SECRET, agent_count=5, seed=5)
    first = [w.genesis()] + [m.raw for m in w.messages(300)]
    send_proposals(settings, first)
    run_validator(settings)
    second = [m.raw for m in w.messages(300)]
    send_proposals(settings, second)
    run_validator(settings)  # a restart resumes from the database position
    run_validator(settings)  # and a third start with nothing new decides nothing twice
    entries, rejections = stored(settings)
    expected = fold(first + second, SECRET, VERSION)
    assert entries == [(e.seq, e.hash) for e in expected.entries]
    assert len(entries) + len(rejections) == len(first) + len(second)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger SET kind = 'x' WHERE seq = 0",
        "DELETE FROM ledger WHERE seq = 0",
        "TRUNCATE ledger",
        "UPDATE postings SET amount = 0",
        "DELETE FROM postings",
        "TRUNCATE postings CASCADE",
    ],
)
def test_the_database_refuses_to_change_the_ledger(settings: Settings, statement: str) -> None:
    w = Workload(SECRET, agent_count=3, seed=6)
    send_proposals(settings, [w.genesis()])
    run_validator(settings)
    with psycopg.connect(settings.database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    entries, _ = stored(settings)
    assert len(entries) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger SET kind = 'x' WHERE seq = 0",
        "DELETE FROM ledger WHERE seq = 0",
        "TRUNCATE ledger",
        "DELETE FROM rejections",
        "ALTER TABLE ledger DISABLE TRIGGER ledger_append_only",
        "ALTER TABLE ledger DROP COLUMN sig",
        "ALTER TABLE postings DISABLE TRIGGER USER",
        "CREATE TABLE grab (x int)",
    ],
)
def test_the_validators_role_appends_and_can_do_nothing_more_to_the_history(settings: Settings, statement: str) -> None:
    send_proposals(settings, [Workload(SECRET, agent_count=3, seed=6).genesis()])
    run_validator(settings)  # as grid_validator: it wrote the genesis
    assert urlsplit(settings.validator_database_url).username == "grid_validator"
    with psycopg.connect(settings.validator_database_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("grid_validator",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    assert len(stored(settings)[0]) == 1


@pytest.mark.parametrize(
    "statement",
    ["INSERT INTO postings SELECT * FROM postings", "UPDATE world_state SET balance = 0", "DELETE FROM checkpoints"],
)
def test_the_dashboards_role_cannot_write(settings: Settings, statement: str) -> None:
    send_proposals(settings, [Workload(SECRET, agent_count=3, seed=6).genesis()])
    run_validator(settings)
    reader = settings.reader_database_url
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute(statement)  # read-only sessions: refused before privileges are even looked at
    with psycopg.connect(reader, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # and with the sessions' guard off:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM ledger",
        "SELECT count(*) FROM rejections",
        "INSERT INTO relay_position VALUES ('sinks', 1)",
        "DELETE FROM sink_deliveries",
        "TRUNCATE sink_records",
        "ALTER TABLE sink_conflicts ADD COLUMN x int",
    ],
)
def test_the_sinks_role_keeps_its_deliveries_and_touches_nothing_else(settings: Settings, statement: str) -> None:
    assert urlsplit(settings.sinks_database_url).username == "grid_sinks"
    with psycopg.connect(settings.sinks_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sink_outbox").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_tcp_logins_take_passwords(settings: Settings) -> None:
    without = with_role(settings.validator_database_url, "grid_validator", None)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(without, connect_timeout=5)
    wrong = settings.validator_database_url.replace("grid_validator:", "grid_validator:0", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def cli(settings: Settings, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "GRID_TOPIC_PREFIX": settings.topic_prefix,
        "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "GRID_DATABASE_URL": settings.database_url,
        "GRID_KEY_SECRET": SECRET.hex(),
        "GRID_FOUNDING_OPERATORS": settings.founding_operators or "",
    }
    return subprocess.run(
        [sys.executable, "-m", "gridgov.cli", *args], input=stdin, env=env, capture_output=True, timeout=60, check=True
    )


def test_an_agent_with_its_own_key_file_signs_as_itself_and_nothing_more(settings: Settings, tmp_path: Path) -> None:
    send_proposals(settings, [Workload(SECRET, agent_count=2, seed=1).genesis()])
    key_file = tmp_path / "agent000.key"
    cli(settings, "keys", "issue", "agent000", "--out", str(key_file))
    assert key_file.stat().st_mode & 0o777 == 0o600
    pay = {"kind": "transfer", "to_account": "agent001:main", "resource": "energy", "quantity": 5}
    own = cli(settings, "propose", "--key", str(key_file), stdin=orjson.dumps({**pay, "from_account": "agent000:main"}))
    policy = {"kind": "policy_set", "params": {"carbon_tax_per_kwh": 0}}
    governs = cli(settings, "propose", "--key", str(key_file), "--nonce", "2", stdin=orjson.dumps(policy))
    # The key file in hand, claiming to be another participant or the operator: the law knows better.
    signer = agent_keys.load(key_file).signer
    as_other = build("agent001", {**pay, "from_account": "agent001:main"}, 0, 10, signer, "as-agent001", 1)
    as_operator = build("operator", policy, 0, 10, signer, "as-operator", 2)
    send_proposals(settings, [encode(as_other), encode(as_operator)])
    cli(settings, "propose", "--raw", stdin=b"\x00not a proposal")
    run_validator(settings)
    with psycopg.connect(settings.database_url) as conn:
        own_id, governs_id = own.stdout.decode().strip(), governs.stdout.decode().strip()
        assert conn.execute("SELECT agent FROM ledger WHERE proposal_id = %s", (own_id,)).fetchone() == ("agent000",)
        reasons = dict(conn.execute("SELECT proposal_id, reason_code FROM rejections").fetchall())
    assert reasons == {
        governs_id: "UNAUTHORIZED",
        "as-agent001": "BAD_SIGNATURE",
        "as-operator": "BAD_SIGNATURE",
        None: "MALFORMED",
    }
    verify_run = cli(settings, "verify")
    assert b"verified" in verify_run.stdout
