"""Linear sink: rejections become one issue per conflict, later occurrences comments; incidents urgent issues.

Delivery ids, stable under restart, rebalance and replay:

- ``linear:issue:{conflict_id}``: the conflict's issue (conflict id = key + window, see ``conflicts``);
- ``linear:comment:{conflict_id}:{n}``: its n-th update, counts as of that update;
- ``linear:incident:{incident_id}``: an urgent issue for a breaker trip or replay anomaly;
- ``linear:sink-failure:{delivery_id}``: an urgent issue for a Discord delivery the other sink is stuck on.

Records are accounted for by ``rejection:{rejection_id}`` and ``incident:{incident_id}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TypeVar

from pydantic import ValidationError

from connectors.linear import LinearClient
from connectors.retry import RetryableError
from schemas.records import IncidentRecord, RejectionRecord
from sinks import metrics, payloads
from sinks.batching import BatchingSink, Message
from sinks.conflicts import Conflict, Rejection, group, overflow
from sinks.delivery import Deliverer
from sinks.store import ConflictRow, Delivery, DeliveryStore, OutboxFile, PlannedDelivery, Receipt

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LinearTransport:
    def __init__(self, client: LinearClient, team_id: str) -> None:
        self._client = client
        self._team_id = team_id

    def ready_in_s(self) -> float:
        return self._client.ready_in_s()

    def send(self, delivery: Delivery, may_repeat: bool) -> Receipt:
        # may_repeat is moot here: recover() looked and found nothing
        if delivery.operation == "comment":
            return Receipt(self._client.create_comment(self._issue_of(delivery), delivery.payload["body"]))
        draft = delivery.payload
        issue = self._client.create_issue(self._team_id, draft["title"], draft["description"], draft["priority"])
        try:
            self._client.create_attachment(issue.id, draft["title"], draft["attachment_url"])
        except RetryableError as exc:
            # the issue exists now, whatever the attachment's fate: the next attempt must look first
            raise RetryableError(str(exc), exc.retry_after_s, maybe_applied=True) from exc
        return Receipt(issue.id, issue.url)

    def recover(self, delivery: Delivery) -> Receipt | None:
        if delivery.operation == "comment":
            comment_id = self._client.find_comment(self._issue_of(delivery), delivery.payload["marker"])
            return Receipt(comment_id) if comment_id is not None else None
        draft = delivery.payload
        issue = self._client.find_issue_by_url(draft["attachment_url"])
        if issue is None:
            issue = self._client.find_issue_by_title(self._team_id, draft["title"])
            if issue is None:
                return None
            self._client.create_attachment(issue.id, draft["title"], draft["attachment_url"])
        return Receipt(issue.id, issue.url)

    @staticmethod
    def _issue_of(delivery: Delivery) -> str:
        if delivery.issue_id is None:  # cannot happen: the issue row precedes its comments and stalls them
            raise AssertionError(f"{delivery.delivery_id}: comment planned before its issue was delivered")
        return delivery.issue_id


def issue_delivery(
    delivery_id: str, draft: payloads.IssueDraft, record_ids: Sequence[str] = (), conflict_id: str | None = None
) -> PlannedDelivery:
    return PlannedDelivery(delivery_id, "issue", asdict(draft), record_ids, conflict_id)


def plan_failure_report(store: DeliveryStore, failed: Delivery, error: str, dashboard_url: str, offline: bool) -> None:
    """Queue an urgent Linear issue about a Discord delivery that is stuck (at most one per delivery)."""
    draft = payloads.failure_issue("discord", failed.delivery_id, error, dashboard_url)
    with store.transaction():
        store.add(issue_delivery(f"linear:sink-failure:{failed.delivery_id}", draft), offline)


class LinearSink(BatchingSink):
    name = "linear"

    def __init__(
        self,
        store: DeliveryStore,
        deliverer: Deliverer | None,
        outbox: OutboxFile,
        topics: tuple[str, str],
        dashboard_url: str,
        conflict_window: tuple[int, int],
        linger_s: float,
        batch_age_max_s: float,
    ) -> None:
        super().__init__(store, deliverer, outbox, linger_s, batch_age_max_s)
        _, self._incidents_topic = topics  # a record from the other topic is a rejection
        self._dashboard_url = dashboard_url
        # The window's length, and how many conflicts open an issue of their own in one window.
        self._conflict_window_s, self._conflicts_per_window_max = conflict_window

    def _plan(self, batch: Sequence[Message]) -> list[PlannedDelivery]:
        rejections, incidents = self._decode(batch)
        unseen = self._store.unseen(
            [f"rejection:{r.record.rejection_id}" for r in rejections]
            + [f"incident:{i.incident_id}" for i in incidents]
        )
        planned = [self._incident(i) for i in _first_of_each(incidents, lambda i: f"incident:{i.incident_id}", unseen)]
        fresh = _first_of_each(rejections, lambda r: f"rejection:{r.record.rejection_id}", unseen)
        planned += [self._conflict(c) for c in group(fresh, self._conflict_window_s)]
        return planned

    def _decode(self, batch: Sequence[Message]) -> tuple[list[Rejection], list[IncidentRecord]]:
        rejections: list[Rejection] = []
        incidents: list[IncidentRecord] = []
        for message in batch:
            try:
                if message.topic == self._incidents_topic:
                    incidents.append(IncidentRecord.model_validate_json(message.value))
                else:
                    record = RejectionRecord.model_validate_json(message.value)
                    rejections.append(Rejection(record, message.partition, message.offset, message.timestamp_s))
            except ValidationError as exc:
                metrics.UNDECODABLE.labels(self.name).inc()
                logger.error(
                    "%s[%d]@%d is not a valid record, not delivered: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
        return rejections, incidents

    def _incident(self, incident: IncidentRecord) -> PlannedDelivery:
        draft = payloads.incident_issue(incident, self._dashboard_url)
        return issue_delivery(f"linear:incident:{incident.incident_id}", draft, [f"incident:{incident.incident_id}"])

    def _conflict(self, conflict: Conflict) -> PlannedDelivery:
        before = self._store.conflict(conflict.conflict_id)
        if before is None and self._store.conflicts_in_window(conflict.window_start) >= self._conflicts_per_window_max:
            conflict = overflow(conflict)  # one more issue would pass the cap: fold it into the overflow issue
            before = self._store.conflict(conflict.conflict_id)
        cid = conflict.conflict_id
        record_ids = [f"rejection:{r.record.rejection_id}" for r in conflict.rejections]
        totals = _totals_after(before, conflict)
        key = conflict.key
        self._store.save_conflict(cid, (key.reason_code, key.agent, key.kind), conflict.window_start, totals)
        view = payloads.ConflictTotals(totals.occurrences, totals.first_source_offset, totals.last_source_offset)
        if before is None:
            draft = payloads.conflict_issue(conflict, view, self._dashboard_url)
            return issue_delivery(f"linear:issue:{cid}", draft, record_ids, cid)
        delivery_id = f"linear:comment:{cid}:{totals.updates}"
        body = payloads.conflict_comment(conflict, view, delivery_id, self._dashboard_url)
        payload = {"body": body, "marker": payloads.delivery_marker(delivery_id)}
        return PlannedDelivery(delivery_id, "comment", payload, record_ids, cid)


def _totals_after(before: ConflictRow | None, conflict: Conflict) -> ConflictRow:
    count = len(conflict.rejections)
    if before is None:
        return ConflictRow(count, 0, conflict.first_source_offset, conflict.last_source_offset)
    return ConflictRow(
        before.occurrences + count,
        before.updates + 1,
        min(before.first_source_offset, conflict.first_source_offset),
        max(before.last_source_offset, conflict.last_source_offset),
    )


def _first_of_each(items: Sequence[T], record_id: Callable[[T], str], unseen: set[str]) -> list[T]:
    """Items whose record id is unseen, each id once (a batch can hold a redelivered duplicate)."""
    kept: list[T] = []
    taken: set[str] = set()
    for item in items:
        rid = record_id(item)
        if rid in unseen and rid not in taken:
            taken.add(rid)
            kept.append(item)
    return kept
