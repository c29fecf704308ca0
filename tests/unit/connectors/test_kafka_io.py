"""Producing against a full local queue: wait while the queue drains, give up with a clear error when it
does not. A real producer with a one-message queue and no broker behind it fills up at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_io import produce_with_backpressure
from core.process import WaitTimeoutError

NOWHERE = "127.0.0.1:1"  # a loopback port nothing listens on
TOPIC = "t"
WAIT_S_MAX = 0.5


@contextmanager
def producer_without_broker(message_timeout_ms: int) -> Iterator[Producer]:
    producer = Producer(
        {
            "bootstrap.servers": NOWHERE,
            "queue.buffering.max.messages": 1,
            "message.timeout.ms": message_timeout_ms,
        },
        logger=logging.getLogger("test-producer"),  # librdkafka's connection errors go to logging, not stderr
    )
    try:
        yield producer
    finally:
        producer.purge()
        producer.flush(0)


def test_it_gives_up_when_the_queue_stays_full_and_names_the_topic() -> None:
    with producer_without_broker(message_timeout_ms=60_000) as producer:
        produce_with_backpressure(producer, TOPIC, b"first")  # fills the queue
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError, match=f"waiting for room in the producer's queue for {TOPIC}"):
            produce_with_backpressure(producer, TOPIC, b"second", wait_s_max=WAIT_S_MAX)
        assert WAIT_S_MAX <= time.monotonic() - started < WAIT_S_MAX + 2


def test_it_waits_for_a_delivery_report_to_make_room() -> None:
    reports: list[bool] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        reports.append(err is None)

    # The first message times out undelivered after 200 ms; serving that report frees the queue.
    with producer_without_broker(message_timeout_ms=200) as producer:
        produce_with_backpressure(producer, TOPIC, b"first", on_delivery=delivered)
        produce_with_backpressure(producer, TOPIC, b"second", on_delivery=delivered, wait_s_max=10)
    assert reports[:1] == [False]
