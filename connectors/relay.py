"""Publishes what the validator committed: ledger events, rejections, alerts and incidents.

At-least-once with stable keys, like an outbox relayed from Postgres: the rows themselves are the
outbox, and ``relay_position`` says how far Kafka has confirmed them. Records are produced only
after their batch committed; a batch counts as relayed once the broker acknowledged every record of
it, and that position is written with the next batch. After a crash, ``catch_up`` republishes from
the stored position, so nothing is lost and a consumer may see a record twice (it dedupes by key).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_io import produce_with_backpressure
from core.kafka_access import KafkaAccess
from core.outgoing import LEDGER_STREAM, REJECTION_STREAM, Outgoing, entry_records, rejection_record
from core.rows import Batch

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
PRODUCER_QUEUE_COUNT_MAX = 1_000_000


class RelayError(RuntimeError):
    pass


@dataclass
class _Pending:
    positions: dict[str, int]
    produced_until: dict[str, int]  # per topic: how many records must be acknowledged for this batch


class Relay:
    def __init__(self, kafka: KafkaAccess, topic: Callable[[str], str], positions: dict[str, int]) -> None:
        self.producer = Producer(
            kafka.config(
                **{
                    "enable.idempotence": True,  # no duplicates or reordering from the producer's own retries
                    "acks": "all",
                    "linger.ms": 5,
                    "queue.buffering.max.messages": PRODUCER_QUEUE_COUNT_MAX,
                    "on_delivery": self._delivered,
                }
            )
        )
        self.topic = topic
        self.confirmed = dict(positions)
        # Per topic, records produced and acknowledged so far. Each topic has one partition and the
        # broker acknowledges a partition's records in order, so "acknowledged >= produced at the end
        # of batch k" means every record of batches <= k arrived — without a closure per record.
        self._produced: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._pending: deque[_Pending] = deque()
        self._failure: str | None = None

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failure = f"delivery to {msg.topic()} failed: {err}"
        else:
            topic = msg.topic()
            assert topic is not None, "a delivery report carries the topic its record was produced to"
            self._acked[topic] = self._acked.get(topic, 0) + 1

    def publish(self, batch: Batch, extra: list[Outgoing] | None = None) -> None:
        """Produce the records of a committed batch; their position is confirmed by delivery reports.

        ``extra`` records (rejection-spike alerts) are derived telemetry: produced with the batch, but
        not re-derived by ``catch_up`` after a crash.
        """
        records: list[Outgoing] = [rejection_record(r) for r in batch.rejections] + (extra or [])
        for e in batch.entries:
            records += entry_records(e)
        positions = dict(self._pending[-1].positions if self._pending else self.confirmed)
        if batch.entries:
            positions[LEDGER_STREAM] = batch.entries[-1].seq + 1
        if batch.rejections:
            positions[REJECTION_STREAM] = batch.rejections[-1].source_offset + 1
        for topic, key, value in records:
            self._produce_one(self.topic(topic), key, value)
        self._pending.append(_Pending(positions, dict(self._produced)))
        self.poll()

    def _produce_one(self, topic: str, key: bytes, value: bytes) -> None:
        produce_with_backpressure(self.producer, topic, value, key)  # delivery reports go to _delivered
        self._produced[topic] = self._produced.get(topic, 0) + 1

    def poll(self, timeout_s: float = 0.0) -> dict[str, int]:
        """Serve delivery reports and return the positions confirmed so far."""
        self.producer.poll(timeout_s)
        if self._failure is not None:
            raise RelayError(self._failure)
        while self._pending and all(self._acked.get(t, 0) >= n for t, n in self._pending[0].produced_until.items()):
            self.confirmed = self._pending.popleft().positions
        return self.confirmed

    def flush(self) -> dict[str, int]:
        if self.producer.flush(FLUSH_TIMEOUT_S) > 0:
            raise RelayError(f"records still undelivered after {FLUSH_TIMEOUT_S} s")
        return self.poll()

    def catch_up(self, unrelayed: Batch) -> dict[str, int]:
        """Republish what the store committed beyond the confirmed positions, then flush."""
        if unrelayed.entries or unrelayed.rejections:
            logger.info(
                "relay catching up", extra={"entries": len(unrelayed.entries), "rejections": len(unrelayed.rejections)}
            )
            self.publish(unrelayed)
        return self.flush()
