"""How many copies a topic gets, and how many must be in sync for a write: the rules, without a broker."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource

from connectors.kafka_admin import _configs, min_insync_replicas, replication_factor


@pytest.mark.parametrize(("brokers", "replicas"), [(1, 1), (2, 2), (3, 3), (5, 3), (9, 3)])
def test_a_topic_has_a_copy_per_broker_up_to_three(brokers: int, replicas: int) -> None:
    assert replication_factor(brokers) == replicas


@pytest.mark.parametrize(("replicas", "insync"), [(1, 1), (2, 1), (3, 2), (4, 2)])
def test_two_copies_must_be_in_sync_once_there_are_three(replicas: int, insync: int) -> None:
    assert min_insync_replicas(replicas) == insync


@pytest.mark.parametrize("brokers", range(1, 10))
def test_a_topic_stays_writable_with_one_broker_down_wherever_it_can(brokers: int) -> None:
    """With one copy lost, the in-sync minimum is still met whenever there was a copy to spare."""
    replicas = replication_factor(brokers)
    assert min_insync_replicas(replicas) <= max(1, replicas - 1)


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class _LaggingAdmin:
    """A cluster whose broker asked does not know the new topic the first ``lagging`` times."""

    def __init__(self, lagging: int, code: int = KafkaError.UNKNOWN_TOPIC_OR_PART) -> None:
        self.lagging, self.code, self.asked = lagging, code, 0

    def describe_configs(
        self, resources: list[ConfigResource], request_timeout: float
    ) -> dict[ConfigResource, Future[Any]]:
        self.asked += 1
        futures: dict[ConfigResource, Future[Any]] = {}
        for resource in resources:
            future: Future[Any] = Future()
            if self.asked <= self.lagging:
                future.set_exception(KafkaException(KafkaError(self.code)))
            else:
                future.set_result({"retention.ms": _Entry("60000")})
            futures[resource] = future
        return futures


def test_a_new_topic_unknown_to_the_broker_asked_is_asked_for_again() -> None:
    admin = _LaggingAdmin(lagging=2)
    configs = _configs(admin, ["t1", "t2"], timeout_s=5.0)  # type: ignore[arg-type]
    assert configs == {"t1": {"retention.ms": "60000"}, "t2": {"retention.ms": "60000"}}
    assert admin.asked == 3


def test_any_other_error_describing_configs_is_raised() -> None:
    with pytest.raises(KafkaException):
        _configs(_LaggingAdmin(lagging=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED), ["t1"], timeout_s=5.0)  # type: ignore[arg-type]
