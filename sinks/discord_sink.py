"""Discord sink: alerts become webhook messages, a burst coalesced into one message with counts.

Each flush turns the batch's new alerts into one message (an embed per alert kind), so a storm that
arrives while the previous message waits out a rate limit becomes one message, not hundreds.
Delivery ids: ``discord:alerts:{hash of the alert ids}``; ``discord:sink-failure:{delivery_id}`` for
a Linear delivery the other sink is stuck on. Alerts are accounted for by ``alert:{alert_id}``.

Discord webhooks have no idempotency key and no way to list what a webhook posted, so a crash in the
milliseconds between Discord's 200 and the database commit cannot be checked afterwards: the message
is sent again, marked as a possible repeat (``payloads.with_repeat_note``). Losing it would be worse.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

from pydantic import ValidationError

from connectors.discord import DiscordWebhook
from schemas.records import AlertRecord
from sinks import metrics, payloads
from sinks.batching import BatchingSink, Message
from sinks.delivery import Deliverer
from sinks.store import Delivery, DeliveryStore, OutboxFile, PlannedDelivery, Receipt

logger = logging.getLogger(__name__)


class DiscordTransport:
    def __init__(self, webhook: DiscordWebhook) -> None:
        self._webhook = webhook

    def ready_in_s(self) -> float:
        return self._webhook.ready_in_s()

    def send(self, delivery: Delivery, may_repeat: bool) -> Receipt:
        payload = payloads.with_repeat_note(delivery.payload) if may_repeat else delivery.payload
        return Receipt(self._webhook.post(payload))

    def recover(self, delivery: Delivery) -> Receipt | None:
        return None  # a webhook cannot list its messages: see the module docstring


def plan_failure_report(store: DeliveryStore, failed: Delivery, error: str, offline: bool) -> None:
    """Queue a Discord alert about a Linear delivery that is stuck (at most one per delivery)."""
    message = payloads.failure_message("linear", failed.delivery_id, error, time.time())
    with store.transaction():
        store.add(PlannedDelivery(f"discord:sink-failure:{failed.delivery_id}", "message", message), offline)


class DiscordSink(BatchingSink):
    name = "discord"

    def __init__(
        self,
        store: DeliveryStore,
        deliverer: Deliverer | None,
        outbox: OutboxFile,
        dashboard_url: str,
        linger_s: float,
        batch_age_max_s: float,
    ) -> None:
        super().__init__(store, deliverer, outbox, linger_s, batch_age_max_s)
        self._dashboard_url = dashboard_url  # alerts link to its pages

    def _plan(self, batch: Sequence[Message]) -> list[PlannedDelivery]:
        alerts = self._decode(batch)
        unseen = self._store.unseen([f"alert:{a.alert_id}" for a, _ in alerts])
        fresh: dict[str, tuple[AlertRecord, float]] = {}
        for alert, at_s in alerts:
            record_id = f"alert:{alert.alert_id}"
            if record_id in unseen:
                fresh.setdefault(record_id, (alert, at_s))
        if not fresh:
            return []
        digest = hashlib.sha256("\n".join(sorted(fresh)).encode()).hexdigest()[:16]
        message = payloads.alerts_message(list(fresh.values()), self._dashboard_url)
        return [PlannedDelivery(f"discord:alerts:{digest}", "message", message, list(fresh))]

    def _decode(self, batch: Sequence[Message]) -> list[tuple[AlertRecord, float]]:
        alerts = []
        for message in batch:
            try:
                alerts.append((AlertRecord.model_validate_json(message.value), message.timestamp_s))
            except ValidationError as exc:
                metrics.UNDECODABLE.labels(self.name).inc()
                logger.error(
                    "%s[%d]@%d is not a valid alert, not delivered: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
        return alerts
