"""LinearClient through httpx against the local Linear stand-in: mutations answered without their
entity, error kinds from ``extensions.code`` and ``extensions.type``, both rate-limit budgets
(requests and complexity) and the stand-in's rate-limit answer as Linear sends it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from connectors.linear import Issue, LinearClient, UnconfirmedMutation
from connectors.retry import PermanentError, RetryableError, RetryPolicy, Waiter, call_with_retries
from tests.standins.linear_server import COMPLEXITY_PER_REQUEST, TEAM_ID_DEFAULT, LinearStandIn

# a reset is an epoch in whole milliseconds and the answer takes a moment: allow that much
CLOCK_SLACK_S = 0.1
RATELIMITED = {
    "errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED", "type": "ratelimited"}}]
}
ATTACHMENT_URL = "http://dash.test/?view=ledger&conflict=c-1"


@pytest.fixture
def linear() -> Iterator[LinearStandIn]:
    with LinearStandIn() as standin:
        yield standin


@pytest.fixture
def client(linear: LinearStandIn) -> Iterator[LinearClient]:
    with httpx.Client() as http:
        yield LinearClient(http, linear.api_key, linear.url)


def look_up(client: LinearClient) -> Issue | None:
    """One cheap query, as the sink's recovery sends it."""
    return client.find_issue_by_url(ATTACHMENT_URL)


def create(client: LinearClient, title: str = "INSUFFICIENT_BALANCE: agent-a on transfer") -> Issue:
    return client.create_issue(TEAM_ID_DEFAULT, title, "**3** proposal(s)", 2)


# --- 1. issueCreate without an issue ------------------------------------------------------------


@pytest.mark.parametrize("created", [False, True], ids=["success-false", "success-true-issue-null"])
def test_issue_create_answered_without_an_issue_is_an_unconfirmed_mutation(
    linear: LinearStandIn, client: LinearClient, created: bool
) -> None:
    linear.answer_without_issue(1, created=created)
    with pytest.raises(UnconfirmedMutation) as caught:
        create(client)
    # retryable, but after a look-up: the issue may exist (and with success: true it does)
    assert isinstance(caught.value, RetryableError) and caught.value.maybe_applied
    assert "issueCreate" in str(caught.value) and "'issue': None" in str(caught.value)
    assert len(linear.issues) == int(created)
    assert create(client).identifier == f"GRID-{int(created) + 1}"  # the next one is answered in full


# --- 2. error kinds from extensions.type as well as extensions.code ------------------------------


@pytest.mark.parametrize(
    ("status", "code", "type_", "expected"),
    [
        (400, None, "ratelimited", RetryableError),
        (200, None, "lock timeout", RetryableError),
        (200, None, "internal error", RetryableError),
        (200, "INTERNAL_SERVER_ERROR", None, RetryableError),
        (400, None, "authentication error", PermanentError),
        (200, None, "forbidden", PermanentError),
        (200, None, "invalid input", PermanentError),
        (200, "INVALID_INPUT", "invalid input", PermanentError),
    ],
)
def test_errors_are_classified_by_extensions_type_as_well_as_code(
    linear: LinearStandIn, client: LinearClient, status: int, code: str | None, type_: str | None, expected: type
) -> None:
    linear.fail_graphql(1, "something", code=code, type_=type_, status=status)
    with pytest.raises(expected) as caught:
        look_up(client)
    assert type(caught.value) is expected
    kind = (type_ or code or "").lower()
    assert kind in str(caught.value) or "rate limited" in str(caught.value)


def test_a_rate_limit_named_only_by_its_type_waits_for_the_spent_budget(
    linear: LinearStandIn, client: LinearClient
) -> None:
    linear.limit_budget(0, 0.5)  # spent: the answer says "0 remaining, reset in 0.5 s"
    linear.fail_graphql(1, "Rate limit exceeded", type_="ratelimited", status=400)
    with pytest.raises(RetryableError) as caught:
        look_up(client)
    assert not caught.value.maybe_applied
    assert 0.5 - CLOCK_SLACK_S < (caught.value.retry_after_s or 0) <= 0.5


# --- 3. the complexity budget -------------------------------------------------------------------


def test_a_spent_complexity_budget_holds_the_next_request_until_its_reset(
    linear: LinearStandIn, client: LinearClient
) -> None:
    linear.limit_complexity(1, 0.4)  # this request spends the last points; the reset is 0.4 s later
    look_up(client)
    assert 0.4 - CLOCK_SLACK_S < client.ready_in_s() <= 0.4
    waiter = Waiter()
    call_with_retries(lambda: look_up(client), RetryPolicy(attempts_max=1), waiter, client.ready_in_s)
    _, requests = linear.snapshot()
    assert linear.violations == 0 and [r.status for r in requests] == [200, 200]
    assert requests[1].arrived_s - requests[0].arrived_s >= 0.4 - CLOCK_SLACK_S
    assert requests[0].complexity_remaining == 0 and requests[1].complexity_remaining > COMPLEXITY_PER_REQUEST


def test_a_complexity_rate_limit_waits_for_the_complexity_reset_not_the_requests_reset(
    linear: LinearStandIn, client: LinearClient
) -> None:
    linear.limit_complexity(0, 0.6)  # spent now; the requests budget is plenty, its reset an hour away
    with pytest.raises(RetryableError) as caught:
        look_up(client)
    assert 0.6 - CLOCK_SLACK_S < (caught.value.retry_after_s or 0) <= 0.6
    assert 0.6 - CLOCK_SLACK_S < client.ready_in_s() <= 0.6
    _, requests = linear.snapshot()
    assert requests[0].rate_limited and requests[0].remaining > 0 and requests[0].complexity_remaining == 0


def test_when_both_budgets_are_spent_the_wait_is_the_later_reset(linear: LinearStandIn, client: LinearClient) -> None:
    linear.limit_budget(0, 0.3)
    linear.limit_complexity(0, 0.7)
    with pytest.raises(RetryableError) as caught:
        look_up(client)
    assert 0.7 - CLOCK_SLACK_S < (caught.value.retry_after_s or 0) <= 0.7
    assert 0.7 - CLOCK_SLACK_S < client.ready_in_s() <= 0.7


# --- 4. the stand-in's rate-limit answer --------------------------------------------------------


def test_rate_limits_are_answered_as_linear_does_http_400_ratelimited_with_the_headers(
    linear: LinearStandIn, client: LinearClient
) -> None:
    linear.rate_limit(1, 0.25)
    linear.limit_budget(1, 0.3)
    query = {"query": "query { attachmentsForURL(url: $url) { nodes { id } } }", "variables": {"url": "u"}}
    answer = httpx.post(linear.url, json=query, headers={"Authorization": linear.api_key})
    assert answer.status_code == 400 and answer.json() == RATELIMITED
    assert answer.headers["Retry-After"] == "0.250"
    now_ms = time.time() * 1000
    for budget in ("Requests", "Complexity"):
        assert int(answer.headers[f"X-RateLimit-{budget}-Limit"]) > 0
        assert int(answer.headers[f"X-RateLimit-{budget}-Remaining"]) > 0
        assert int(answer.headers[f"X-RateLimit-{budget}-Reset"]) > now_ms
    assert int(answer.headers["X-Complexity"]) == COMPLEXITY_PER_REQUEST
    look_up(client)  # the last request of the budget
    with pytest.raises(RetryableError) as caught:  # sent before the reset: a violation, answered the same way
        look_up(client)
    _, requests = linear.snapshot()
    assert [(r.status, r.rate_limited) for r in requests] == [(400, True), (200, False), (400, True)]
    assert linear.violations == 1 and 0 < (caught.value.retry_after_s or 0) <= 0.3


def test_the_429_variant_stays_available(linear: LinearStandIn, client: LinearClient) -> None:
    linear.rate_limit(1, 0.2, status=429)
    with pytest.raises(RetryableError) as caught:
        look_up(client)
    assert caught.value.retry_after_s == 0.2 and linear.snapshot()[1][0].status == 429
