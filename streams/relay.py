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
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from streams.records import Outgoing, entry_records, rejection_record
from streams.store import REJECTION_COLUMNS, Batch, RejectionRow, iter_entries

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
PRODUCER_QUEUE_COUNT_MAX = 1_000_000
LEDGER_STREAM, REJECTION_STREAM = "ledger-events", "rejections"


class RelayError(RuntimeError):
    pass


@dataclass
class _Pending:
    positions: dict[str, int]
    remaining: int


class Relay:
    def __init__(self, bootstrap: str, topic: Callable[[str], str], positions: dict[str, int]) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,  # no duplicates or reordering from the producer's own retries
                "acks": "all",
                "linger.ms": 5,
                "queue.buffering.max.messages": PRODUCER_QUEUE_COUNT_MAX,
            }
        )
        self.topic = topic
        self.confirmed = dict(positions)
        self._pending: deque[_Pending] = deque()
        self._failure: str | None = None

    def publish(self, batch: Batch) -> None:
        """Produce the records of a committed batch; their position is confirmed by delivery reports."""
        records: list[Outgoing] = [rejection_record(r) for r in batch.rejections]
        for e in batch.entries:
            records += entry_records(e)
        positions = dict(self.confirmed)
        if batch.entries:
            positions[LEDGER_STREAM] = batch.entries[-1].seq + 1
        if batch.rejections:
            positions[REJECTION_STREAM] = batch.rejections[-1].source_offset + 1
        self._produce(records, positions)

    def _produce(self, records: list[Outgoing], positions: dict[str, int]) -> None:
        pending = _Pending(positions, len(records))
        self._pending.append(pending)
        for topic, key, value in records:
            self._produce_one(topic, key, value, pending)
        self.poll()

    def _produce_one(self, topic: str, key: bytes, value: bytes, pending: _Pending) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._failure = f"delivery to {topic} failed: {err}"
            pending.remaining -= 1

        while True:
            try:
                self.producer.produce(self.topic(topic), value=value, key=key, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.1)

    def poll(self, timeout_s: float = 0.0) -> dict[str, int]:
        """Serve delivery reports and return the positions confirmed so far."""
        self.producer.poll(timeout_s)
        if self._failure is not None:
            raise RelayError(self._failure)
        while self._pending and self._pending[0].remaining == 0:
            self.confirmed = self._pending.popleft().positions
        return self.confirmed

    def flush(self) -> dict[str, int]:
        if self.producer.flush(FLUSH_TIMEOUT_S) > 0:
            raise RelayError(f"records still undelivered after {FLUSH_TIMEOUT_S} s")
        return self.poll()

    def catch_up(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        """Republish everything committed beyond the stored relay positions, then flush."""
        entries = list(iter_entries(conn, self.confirmed.get(LEDGER_STREAM, 0)))
        rows = conn.execute(
            f"SELECT {REJECTION_COLUMNS} FROM rejections WHERE source_offset >= %s ORDER BY source_offset",
            (self.confirmed.get(REJECTION_STREAM, 0),),
        ).fetchall()
        conn.commit()
        if entries or rows:
            logger.info("relay catching up", extra={"entries": len(entries), "rejections": len(rows)})
            self.publish(Batch(entries=entries, rejections=[RejectionRow(*r) for r in rows]))
        return self.flush()


def load_positions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT stream, position FROM relay_position").fetchall()
    conn.commit()
    return {stream: position for stream, position in rows}
