"""The broker's trust boundary on the real local broker: SCRAM logins, and ACLs per principal.

Who may do what is ``connectors.kafka_admin.namespace_grants``; these tests try each boundary as the
principal that must be stopped by it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from connectors import kafka_admin
from core import config
from core.config import Settings
from core.kafka_access import KafkaAccess, Principal, properties_path
from gridgov.infra import kafka as local_kafka
from tests.conftest import broker_settings

TIMEOUT_S = 15.0
pytestmark = pytest.mark.skipif(
    not config.load().kafka_sasl or bool(os.environ.get("GRID_KAFKA_BOOTSTRAP")),
    reason="the local broker's authentication is under test; this one is plaintext or someone else's",
)


@pytest.fixture
def grid(kafka_bootstrap: str, topic_prefix: str) -> Settings:
    s = broker_settings(kafka_bootstrap).replace(topic_prefix=topic_prefix)
    kafka_admin.ensure_topics(s)
    return s


def delivery_errors(kafka: KafkaAccess, topic: str) -> list[KafkaError | None]:
    """What the broker answered to one record sent to ``topic`` as ``kafka``'s principal."""
    errors: list[KafkaError | None] = []
    producer = Producer(kafka.config(**{"message.timeout.ms": int(TIMEOUT_S * 1000)}))
    producer.produce(topic, b"{}", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(TIMEOUT_S)
    return errors


def fetch_error(kafka: KafkaAccess, topic: str, group: str = "security-probe") -> KafkaError | None:
    """The first error a consumer of ``topic`` as ``kafka``'s principal (in ``group``) gets, or None once it
    may read. librdkafka looks the group's coordinator up even for an assigned consumer: a group it may not
    use is refused too."""
    consumer = Consumer(kafka.config(**{"group.id": group, "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        for _ in range(int(TIMEOUT_S / 0.5)):
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                return message.error()
            if message is not None:
                return None
    finally:
        consumer.close()
    return None


def test_a_client_without_credentials_is_refused(grid: Settings) -> None:
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": grid.kafka_bootstrap}).list_topics(timeout=3)


def test_a_wrong_password_is_refused(grid: Settings) -> None:
    impostor = KafkaAccess(grid.kafka_bootstrap, "validator", "not-the-password")
    assert local_kafka.answers(impostor, timeout_s=3) is False
    assert local_kafka.answers(grid.kafka("validator"), timeout_s=3) is True


@pytest.mark.parametrize(
    ("principal", "topic", "allowed"),
    [
        ("producer", "proposals", True),
        ("producer", "alerts", False),  # a participant cannot raise an alert: only the validator can
        ("producer", "incidents", False),
        ("producer", "ledger-events", False),
        ("dashboard", "proposals", True),  # the console's signed commands
        ("dashboard", "rejections", False),
        ("sinks", "proposals", False),
        ("sinks", "alerts", False),
        ("validator", "alerts", True),
        ("validator", "ledger-events", True),
    ],
)
def test_each_principal_writes_only_its_topics(grid: Settings, principal: Principal, topic: str, allowed: bool) -> None:
    errors = delivery_errors(grid.kafka(principal), grid.topic(topic))
    assert len(errors) == 1
    if allowed:
        assert errors == [None]
    else:
        assert errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors


def test_only_the_validator_reads_proposals_and_the_sinks_only_their_inputs(grid: Settings) -> None:
    delivery_errors(grid.kafka("validator"), grid.topic("alerts"))
    delivery_errors(grid.kafka("producer"), grid.topic("proposals"))
    refused = [("producer", "proposals"), ("sinks", "proposals"), ("dashboard", "alerts"), ("producer", "alerts")]
    for principal, topic in refused:
        error = fetch_error(grid.kafka(principal), grid.topic(topic))
        assert error is not None, (principal, topic)
        assert error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), error
    assert fetch_error(grid.kafka("sinks"), grid.topic("alerts"), f"{grid.topic_prefix}-sinks") is None
    assert fetch_error(grid.kafka("validator"), grid.topic("proposals"), "grid-validator-probe") is None


def test_deleting_a_namespace_removes_its_grants(grid: Settings) -> None:
    kafka_admin.delete_topics(grid, grid.topic_prefix)
    admin = kafka_admin.admin_client(grid.kafka("admin"))
    for spec in kafka_admin.TOPIC_SPECS:
        on_topic = AclBindingFilter(
            ResourceType.TOPIC, grid.topic(spec.name), ResourcePatternType.LITERAL, None, None,
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        assert admin.describe_acls(on_topic, request_timeout=TIMEOUT_S).result(TIMEOUT_S) == [], spec.name


def test_kafkas_own_tools_log_in_with_the_properties_file(grid: Settings) -> None:
    """``kafka-topics.sh --command-config GRID_HOME/credentials/kafka-admin.properties`` works as documented."""
    cmd = [
        *local_kafka.java_cmd(grid, heap_mb=256), "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server", grid.kafka_bootstrap, "--command-config", str(properties_path(grid.home, "admin")),
        "--list",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert grid.topic("proposals") in done.stdout.split()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_cluster_formatted_without_authentication_is_secured_in_place(tmp_path: Path) -> None:
    """An existing grid's broker keeps its topics and records when ``up`` starts it secured."""
    base = config.load().replace(home=tmp_path, kafka_port=_free_port(), kafka_controller_port=_free_port())
    open_cluster = base.replace(kafka_sasl=False, topic_prefix="old")
    secured = base.replace(kafka_sasl=True, topic_prefix="old")
    # the jars are the shared ones: link them instead of fetching again
    local_kafka.root(base).mkdir(parents=True)
    local_kafka.libs_dir(base).symlink_to(local_kafka.libs_dir(config.load()))
    try:
        local_kafka.up(open_cluster)
        kafka_admin.ensure_topics(open_cluster)
        assert delivery_errors(open_cluster.kafka("admin"), open_cluster.topic("proposals")) == [None]
        local_kafka.down(open_cluster)

        result = local_kafka.up(secured)
        assert "secure_s" in result["timings_s"]
        assert local_kafka.answers(KafkaAccess(secured.kafka_bootstrap), timeout_s=3) is False
        kafka_admin.ensure_topics(secured)  # the grants for the namespace the open cluster had
        low, high = kafka_admin.watermarks(secured.kafka("validator"), secured.topic("proposals"))
        assert (low, high) == (0, 1)  # the record written before is still there
    finally:
        local_kafka.down(secured)
