"""The local infrastructure: launcher, CLI, topics on a real broker, a real PostgreSQL round trip."""

from __future__ import annotations

import argparse
import json
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from connectors import kafka_admin
from connectors.kafka_io import proposal_producer, send_all
from core import config
from core.config import Settings
from core.credentials import credentials_dir
from core.kafka_access import KafkaAccess
from core.pg_access import LOGIN_ROLES, password_name, stored_password, with_role
from gridgov import infra
from gridgov.commands import infra as infra_command
from gridgov.infra import postgres

THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
TIMEOUT_S = 30.0


def settings_for(bootstrap: str, prefix: str) -> Settings:
    return config.load().replace(topic_prefix=prefix, kafka_bootstrap_external=bootstrap)


def healthy(info: dict[str, object]) -> bool:
    return info["state"] == "running" or (info["state"] == "external" and info["reachable"] is True)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    infra_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_status_shows_both_running_after_up() -> None:
    infra.up()
    status = infra.status()
    assert set(status) == {"kafka", "postgres"}
    assert all(healthy(info) for info in status.values()), status


def test_up_twice_is_harmless() -> None:
    first = infra.up()
    second = infra.up()
    for name, info in second.items():
        assert info["state"] in ("already running", "external"), info
        assert info.get("pid") == first[name].get("pid")
    assert all(healthy(info) for info in infra.status().values())


def test_cli_status_shows_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    infra.up()
    assert run_cli("infra", "status") == 0
    text = capsys.readouterr().out
    s = config.load()
    assert s.kafka_bootstrap in text
    assert "postgresql://" in text
    assert run_cli("infra", "status", "--json", "--only", "postgres") == 0
    shown = capsys.readouterr().out
    assert set(json.loads(shown)) == {"postgres"}
    password = stored_password(s.home, "postgres")
    assert password and password not in text + shown and ":***@" in text  # URLs are shown masked


def test_topics_have_expected_partitions_and_retention(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    created = kafka_admin.ensure_topics(s)
    assert {i.name: i.action for i in created} == {s.topic(spec.name): "created" for spec in kafka_admin.TOPIC_SPECS}
    infos = {i.name: i for i in kafka_admin.describe_topics(s)}
    assert all(i.partitions == 1 for i in infos.values())
    # one broker here (or a cluster someone else runs): as many copies as it has, at most three
    assert all(i.min_insync_replicas == kafka_admin.min_insync_replicas(i.replicas) for i in infos.values())
    assert infos[s.topic("proposals")].retention_ms == -1
    assert infos[s.topic("proposals")].max_message_bytes == 2 * 1024 * 1024
    assert infos[s.topic("ledger-events")].retention_ms == -1
    assert infos[s.topic("alerts")].retention_ms == THIRTY_DAYS_MS
    assert all(i.action == "ok" for i in kafka_admin.ensure_topics(s))


def test_drifted_retention_is_restored(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    kafka_admin.ensure_topics(s)
    admin = kafka_admin.admin_client(s.kafka("admin"))
    entry = ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, s.topic("proposals"), incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_S)
    actions = {i.name: i.action for i in kafka_admin.ensure_topics(s)}
    assert actions[s.topic("proposals")] == "altered"
    assert {i.name: i.retention_ms for i in kafka_admin.describe_topics(s)}[s.topic("proposals")] == -1


def test_wrong_partition_count_is_an_error(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    admin = kafka_admin.admin_client(s.kafka("admin"))
    admin.create_topics([NewTopic(s.topic("alerts"), 2, 1)])[s.topic("alerts")].result(TIMEOUT_S)
    with pytest.raises(kafka_admin.TopicMismatchError, match="alerts"):
        kafka_admin.ensure_topics(s)


def produce(kafka: KafkaAccess, topic: str, values: list[bytes]) -> None:
    # The project's producer: idempotent, so a retried first request cannot reorder the messages.
    send_all(proposal_producer(kafka), topic, [(b"k", value) for value in values])


def consume(kafka: KafkaAccess, topic: str, group: str, count: int) -> list[Message]:
    options = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    consumer = Consumer(kafka.config(**options))
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                messages.append(message)
        if messages:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert len(messages) == count
    return messages


def test_produce_and_consume_through_the_broker(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    kafka_admin.ensure_topics(s)
    # above the clients' 1 MB default: the proposals topic must accept it (the validator rejects it later)
    big = b"x" * 1_500_000
    produce(s.kafka("admin"), s.topic("proposals"), [b'{"hello": "grid"}', big])
    messages = consume(s.kafka("admin"), s.topic("proposals"), f"{topic_prefix}-g", 2)
    assert [m.value() for m in messages] == [b'{"hello": "grid"}', big]
    assert [m.offset() for m in messages] == [0, 1]


def test_reset_group_offsets(kafka_bootstrap: str, topic_prefix: str) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    kafka_admin.ensure_topics(s)
    topic, group, admin = s.topic("ledger-events"), f"{topic_prefix}-g", s.kafka("admin")
    produce(admin, topic, [b"0", b"1", b"2"])
    consume(admin, topic, group, 3)
    assert kafka_admin.reset_group_offsets(admin, group, topic) == {0: 0}
    assert [m.offset() for m in consume(admin, topic, group, 3)] == [0, 1, 2]
    assert kafka_admin.reset_group_offsets(admin, group, topic, to_offset=2) == {0: 2}
    assert [m.value() for m in consume(admin, topic, group, 1)] == [b"2"]


def test_postgres_round_trip(fresh_database: str) -> None:
    marker = uuid.uuid4().hex
    with psycopg.connect(fresh_database) as conn:
        conn.execute("CREATE TABLE roundtrip (id serial PRIMARY KEY, body jsonb NOT NULL)")
        conn.execute("INSERT INTO roundtrip (body) VALUES (%s::jsonb)", (json.dumps({"marker": marker}),))
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT body->>'marker' FROM roundtrip").fetchone()
    assert row == (marker,)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def on_postgres(url: str) -> str:
    """``url`` on the cluster's always-present database (the test makes no other)."""
    return urlsplit(url)._replace(path="/postgres").geturl()


def test_a_cluster_made_with_trust_is_upgraded_in_place_to_passwords(tmp_path: Path) -> None:
    """A cluster of before (every login trusted) gets its passwords, then the pg_hba.conf that needs
    them; its data stays and nothing is restarted."""
    s = config.load().replace(home=tmp_path / "home", pg_port=free_port(), database_url_external=None, pg_fast=True)
    bindir, _ = postgres.ensure_installed()
    postgres.prepare_dirs(s)
    old_initdb = [str(bindir / "initdb"), "-D", str(postgres.data_dir(s)), "--auth=trust", "-U", "postgres"]
    assert postgres._run_pg([*old_initdb, "-E", "UTF8", "--locale=C"], 120).returncode == 0
    postgres.pg_ctl_start(s, bindir)
    try:
        trusted = on_postgres(with_role(s.database_url, "postgres", None))
        with psycopg.connect(trusted, autocommit=True) as conn:  # anyone on the port, as the owner
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        pid = postgres.running_pid(s)
        assert postgres.up(s)["state"] == "already running" and postgres.running_pid(s) == pid
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(trusted, connect_timeout=5)
        owner = on_postgres(s.database_url)
        with psycopg.connect(owner) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
        for role in LOGIN_ROLES:
            assert (credentials_dir(s.home) / password_name(role)).stat().st_mode & 0o777 == 0o600
            with psycopg.connect(on_postgres(s.role_database_url(role))) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (role,)
        assert postgres.socket_dir(s).stat().st_mode & 0o777 == 0o700
    finally:
        postgres.down(s)
