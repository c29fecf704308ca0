"""How many copies a topic gets, and how many must be in sync for a write: the rules, without a broker."""

from __future__ import annotations

import pytest

from connectors.kafka_admin import min_insync_replicas, replication_factor


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
