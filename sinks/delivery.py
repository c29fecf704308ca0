"""Deliver a sink's pending rows in order, each exactly once as far as the outside service allows.

For each pending row, oldest first:

1. If an earlier request for it may have reached the service (``attempts > 0`` after a crash, or a
   timeout or 5xx in this process), ask the transport to ``recover`` it: Linear finds the issue by its
   attachment URL or title and the comment by its delivery marker. Found means delivered.
2. Count the attempt in the database, then send.
3. On confirmation, mark the row delivered with the id the service gave it (one transaction).

Transient failures are retried with bounded backoff and jitter (``connectors.retry``). When a round
of retries runs out, or the service refuses the request outright, the row is not skipped: the sink
stalls on it, counts the failure, reports it once through the other channel (a pending row for the
other sink) and probes again every ``stall_probe_s``. Nothing behind it is delivered meanwhile, so
per-key order holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from connectors.retry import PermanentError, RetriesExhausted, RetryableError, RetryPolicy, Waiter, call_with_retries
from sinks import metrics
from sinks.store import Delivery, DeliveryStore, Receipt

logger = logging.getLogger(__name__)

STALL_PROBE_INTERVAL_S = 60.0

FailureReporter = Callable[[Delivery, str], None]


class Transport(Protocol):
    def ready_in_s(self) -> float: ...

    def send(self, delivery: Delivery, may_repeat: bool) -> Receipt:
        """One request. ``may_repeat``: an earlier request may have arrived and ``recover`` could not tell."""
        ...

    def recover(self, delivery: Delivery) -> Receipt | None:
        """What an earlier request for ``delivery`` created, if the service shows one."""
        ...


class Deliverer:
    def __init__(
        self,
        store: DeliveryStore,
        transport: Transport,
        policy: RetryPolicy,
        waiter: Waiter,
        report_failure: FailureReporter,
        stall_probe_s: float = STALL_PROBE_INTERVAL_S,
    ) -> None:
        self._store = store
        self._transport = transport
        self._policy = policy
        self._waiter = waiter
        self._report_failure = report_failure
        self._stall_probe_s = stall_probe_s
        self._sink = store.sink

    def drain(self) -> int:
        """Deliver every pending row, oldest first; return how many were delivered."""
        delivered = 0
        while (delivery := self._store.next_pending()) is not None:
            self._deliver(delivery)
            delivered += 1
            metrics.BACKLOG.labels(self._sink).set(self._store.backlog())
        return delivered

    def _deliver(self, delivery: Delivery) -> None:
        attempt = _Attempt(self._store, self._transport, delivery)
        reported = False
        while True:
            try:
                receipt = call_with_retries(
                    attempt.run, self._policy, self._waiter, self._transport.ready_in_s, self._on_retry
                )
            except (RetriesExhausted, PermanentError) as exc:
                metrics.FAILED.labels(self._sink).inc()
                metrics.STALLED.labels(self._sink).set(1)
                self._store.note_error(delivery.delivery_id, str(exc))
                logger.error("%s sink stalled on %s: %s", self._sink, delivery.delivery_id, exc)
                if not reported:
                    self._report_failure(delivery, str(exc))
                    reported = True
                self._waiter.sleep(max(self._stall_probe_s, _retry_after_s(exc)))
                continue
            self._store.mark_delivered(delivery, receipt)
            metrics.DELIVERED.labels(self._sink).inc()
            metrics.STALLED.labels(self._sink).set(0)
            return

    def _on_retry(self, exc: Exception, delay_s: float) -> None:
        metrics.RETRIED.labels(self._sink).inc()
        logger.warning("%s sink: %s; retrying in %.2f s", self._sink, exc, delay_s)


def _retry_after_s(exc: Exception) -> float:
    """The wait the service asked for in its last answer, if it named one."""
    last = exc.last if isinstance(exc, RetriesExhausted) else exc
    return last.retry_after_s or 0.0 if isinstance(last, RetryableError) else 0.0


class _Attempt:
    """One delivery's attempts, remembering whether an earlier one may have reached the service."""

    def __init__(self, store: DeliveryStore, transport: Transport, delivery: Delivery) -> None:
        self._store = store
        self._transport = transport
        self._delivery = delivery
        self._uncertain = delivery.attempts > 0
        # Sticky: once recover() found nothing for an uncertain attempt, a transport that cannot look
        # messages up (Discord) may be repeating one; it says so in what it sends.
        self._may_repeat = False

    def run(self) -> Receipt:
        if self._uncertain:
            found = self._transport.recover(self._delivery)
            if found is not None:
                logger.info("%s was delivered before; not sending it again", self._delivery.delivery_id)
                return found
            self._uncertain = False
            self._may_repeat = True
        self._store.count_attempt(self._delivery.delivery_id)
        self._delivery = replace(self._delivery, attempts=self._delivery.attempts + 1)
        try:
            return self._transport.send(self._delivery, self._may_repeat)
        except RetryableError as exc:
            self._uncertain = exc.maybe_applied
            raise
        except PermanentError:
            self._uncertain = True  # a multi-request send may have done its first part before the refusal
            raise
