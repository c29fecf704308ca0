"""The add()/flush() shape both sinks share.

``add`` only buffers. ``flush`` plans the buffered records into deliveries (one transaction that
also records which records each delivery accounts for, so a record seen again is not planned again),
then, when the sink has credentials, delivers every pending row and returns only once the outside
service has confirmed them all. The caller acknowledges the buffered records on their topic after
``flush`` returns, never before: commit-after-flush. Offline, ``flush`` stops after planning (and
mirrors the plan into the JSONL outbox), since the rows in PostgreSQL now hold what was to be sent.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sinks import metrics
from sinks.delivery import Deliverer
from sinks.store import DeliveryStore, OutboxFile, PlannedDelivery

logger = logging.getLogger(__name__)

BATCH_COUNT_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record as the sinks need it; the Kafka timestamp places it in a conflict window."""

    topic: str
    partition: int
    offset: int
    timestamp_s: float
    value: bytes


class BatchingSink(ABC):
    name: str

    def __init__(
        self,
        store: DeliveryStore,
        deliverer: Deliverer | None,
        outbox: OutboxFile,
        linger_s: float,
        batch_age_max_s: float,
    ) -> None:
        self._store = store
        self._deliverer = deliverer  # None: no credentials, offline
        self._outbox = outbox
        self._linger_s = linger_s
        self._batch_age_max_s = batch_age_max_s
        self._batch: list[Message] = []
        self._opened_at_s = 0.0
        self._last_added_at_s = 0.0
        metrics.OFFLINE.labels(self.name).set(0 if self.online else 1)

    @property
    def online(self) -> bool:
        return self._deliverer is not None

    def add(self, message: Message) -> None:
        now_s = time.monotonic()
        if not self._batch:
            self._opened_at_s = now_s
        self._batch.append(message)
        self._last_added_at_s = now_s

    def flush_due(self) -> bool:
        if not self._batch:
            return False
        now_s = time.monotonic()
        return (
            len(self._batch) >= BATCH_COUNT_MAX
            or now_s - self._last_added_at_s >= self._linger_s
            or now_s - self._opened_at_s >= self._batch_age_max_s
        )

    def flush(self) -> None:
        """Plan the batch, then deliver all that is pending; return once the service confirmed it."""
        with self._store.transaction():
            planned = self._plan(self._batch)
            added = [p for p in planned if self._store.add(p, offline=not self.online)]
        if not self.online:
            self._outbox.append(self.name, added)
            if added:
                logger.warning(
                    "%s sink offline (no credentials): %d message(s) written to the outbox (%s)",
                    self.name,
                    len(added),
                    self._outbox.path,
                )
        self._batch.clear()
        self.deliver_backlog()

    def deliver_backlog(self) -> None:
        """Deliver pending rows: the outbox after credentials arrived, failure reports from the other sink."""
        if self._deliverer is not None:
            self._deliverer.drain()
        metrics.BACKLOG.labels(self.name).set(self._store.backlog())

    @abstractmethod
    def _plan(self, batch: Sequence[Message]) -> list[PlannedDelivery]:
        """Deliveries for the batch's records that no earlier delivery accounts for; runs in a transaction."""
