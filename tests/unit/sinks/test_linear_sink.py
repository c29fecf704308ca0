"""The Linear sink's delivery loop (``Deliverer`` with ``LinearTransport`` and the real ``LinearClient``
over httpx) against the local Linear stand-in, with the delivery store kept in memory."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.linear import LinearClient
from connectors.retry import RetryPolicy, Waiter
from sinks.delivery import Deliverer
from sinks.linear_sink import LinearTransport
from sinks.store import Delivery, Receipt
from tests.standins.linear_server import TEAM_ID_DEFAULT, LinearStandIn

FAST_RETRIES = RetryPolicy(attempts_max=4, backoff_base_s=0.01, backoff_cap_s=0.05)
STALL_PROBE_S = 0.05
TITLE = "INSUFFICIENT_BALANCE: agent-a on transfer"


class MemoryStore:
    """What ``Deliverer`` uses of ``DeliveryStore``, in memory."""

    sink = "linear"

    def __init__(self, *pending: Delivery) -> None:
        self.pending = list(pending)
        self.delivered: dict[str, Receipt] = {}
        self.errors: list[str] = []

    def next_pending(self) -> Delivery | None:
        return self.pending[0] if self.pending else None

    def backlog(self) -> int:
        return len(self.pending)

    def count_attempt(self, delivery_id: str) -> None:
        pass

    def note_error(self, delivery_id: str, error: str) -> None:
        self.errors.append(error)

    def mark_delivered(self, delivery: Delivery, receipt: Receipt) -> None:
        self.pending.remove(delivery)
        self.delivered[delivery.delivery_id] = receipt


def issue_delivery() -> Delivery:
    payload = {
        "title": TITLE,
        "description": "**3** proposal(s)",
        "priority": 2,
        "attachment_url": "http://dash.test/?view=ledger&conflict=c-1",
    }
    return Delivery(seq=1, delivery_id="linear:issue:c-1", operation="issue", payload=payload, attempts=0)


@pytest.fixture
def linear() -> Iterator[LinearStandIn]:
    with LinearStandIn() as standin:
        yield standin


@pytest.mark.parametrize("created", [False, True], ids=["success-false", "success-true-issue-null"])
def test_an_issue_create_answered_without_an_issue_is_retried_after_a_look_up_and_delivered_once(
    linear: LinearStandIn, created: bool
) -> None:
    linear.answer_without_issue(1, created=created)
    store = MemoryStore(issue_delivery())
    waiter = Waiter()
    failures: list[str] = []

    def report_failure(delivery: Delivery, error: str) -> None:
        failures.append(error)
        waiter.stop()  # a stall would probe forever: end the loop, and the test, here

    with httpx.Client() as http:
        transport = LinearTransport(LinearClient(http, linear.api_key, linear.url), TEAM_ID_DEFAULT)
        deliverer = Deliverer(store, transport, FAST_RETRIES, waiter, report_failure, STALL_PROBE_S)  # type: ignore[arg-type]
        assert deliverer.drain() == 1
    issues, requests = linear.snapshot()
    assert failures == [] and store.pending == []
    assert [i.title for i in issues] == [TITLE]  # one issue, whether the first answer created it or not
    assert store.delivered["linear:issue:c-1"] == Receipt(issues[0].id, issues[0].url)
    operations = [r.operation for r in requests]
    # the unconfirmed create is followed by a look-up (attachment URL, then title) before anything else
    assert operations[:3] == ["issueCreate", "attachmentsForURL", "issues"]
    assert operations.count("issueCreate") == (1 if created else 2)
