"""Sink payloads without I/O: Discord's size limits, Linear markdown truncation, conflict grouping,
and how the clients classify answers (through ``httpx.MockTransport``, no sockets)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import get_args

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.discord import (
    CONTENT_LENGTH_MAX,
    EMBEDS_TOTAL_LENGTH_MAX,
    DiscordWebhook,
    embed_length,
    execute_url,
    fit_payload,
    truncate,
)
from connectors.linear import LinearClient
from connectors.retry import PermanentError, RetryableError, RetryPolicy
from schemas.records import AlertKind, AlertRecord, IncidentRecord
from sinks import payloads
from sinks.conflicts import MISSING_PART, UNAUTHENTICATED, ConflictKey, Rejection, group
from tests.standins.discord_server import limit_violations
from tests.support.records import sample_rejection

DASHBOARD = "http://dash.test"
DAY_S = 24 * 3600
NOON_S = 1_767_225_600.0 + 12 * 3600  # 2026-01-01T12:00:00Z


def rejection(
    offset: int,
    reason: str = "INSUFFICIENT_BALANCE",
    agent: str | None = "agent-a",
    kind: str | None = "transfer",
    at_s: float = NOON_S,
    rationale: str = "cheap now",
) -> Rejection:
    record = sample_rejection(offset, reason, agent, kind, rationale)
    return Rejection(record, partition=0, offset=offset, timestamp_s=at_s)


def alert(
    n: int, kind: str = "rejection_spike", severity: str = "critical", detail: str = "spike"
) -> tuple[AlertRecord, float]:
    record = AlertRecord(
        alert_id=f"alert-{n}",
        kind=kind,
        severity=severity,
        title=f"{kind} #{n}",
        detail=detail,
        seq=n,
        telemetry={"rejections_per_min": n},
        validator_version="law-1.4.0",
        policy_version=7,
    )
    return record, NOON_S + n


# --- Discord limits -------------------------------------------------------------------------------


def test_truncate_keeps_short_text_and_marks_cut_text_with_an_ellipsis() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
    assert len(truncate("x" * 5000, CONTENT_LENGTH_MAX)) == CONTENT_LENGTH_MAX


def test_fit_payload_clamps_every_limit_discord_enforces() -> None:
    field = {"name": "n" * 300, "value": "v" * 2000}
    embed = {"title": "t" * 300, "description": "d" * 5000, "fields": [field] * 30, "footer": {"text": "f" * 3000}}
    fitted = fit_payload({"content": "c" * 2500, "embeds": [embed] * 12})
    assert limit_violations(fitted) == []
    assert len(fitted["embeds"]) <= 10
    assert sum(embed_length(e) for e in fitted["embeds"]) <= EMBEDS_TOTAL_LENGTH_MAX
    assert fitted["embeds"][0]["title"].endswith("…")


def test_fit_payload_fills_empty_field_names_and_values() -> None:
    fitted = fit_payload({"embeds": [{"title": "x", "fields": [{"name": "", "value": ""}]}]})
    assert limit_violations(fitted) == []


@settings(max_examples=60, deadline=None)
@given(
    content=st.integers(0, 3000),
    embeds=st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 6000), st.integers(0, 40), st.integers(0, 1500)), max_size=14
    ),
)
def test_any_fitted_payload_passes_discords_checks(content: int, embeds: list[tuple[int, int, int, int]]) -> None:
    payload = {
        "content": "c" * content,
        "embeds": [
            {"title": "t" * t, "description": "d" * d, "fields": [{"name": "n", "value": "v" * v}] * f}
            for t, d, f, v in embeds
        ],
    }
    assert limit_violations(fit_payload(payload)) == []


def test_a_storm_of_alerts_becomes_one_message_with_counts_most_severe_first() -> None:
    storm = [alert(n, "replay_anomaly", "warning", "w" * 4000) for n in range(150)]
    storm += [alert(n, "breaker_trip", "critical", "c" * 4000) for n in range(150, 300)]
    message = payloads.alerts_message(storm, DASHBOARD)
    assert limit_violations(message) == []
    assert message["content"] == "**300 alerts** (150 critical, 150 warning)"
    assert [e["title"].split(":")[0] for e in message["embeds"]] == ["breaker_trip ×150", "replay_anomaly ×150"]
    assert message["embeds"][0]["color"] == 0xE74C3C
    assert message["allowed_mentions"] == {"parse": []}
    assert any("140 earlier alert(s)" in f["value"] for e in message["embeds"] for f in e["fields"])


def test_a_single_alert_has_no_count_and_the_repeat_note_survives_long_content() -> None:
    message = payloads.alerts_message([alert(1)], DASHBOARD)
    assert message["content"] == "" and message["embeds"][0]["title"] == r"rejection_spike: rejection\_spike \#1"
    noted = payloads.with_repeat_note({**message, "content": "z" * 2000})
    assert noted["content"].startswith("_(re-sent") and len(noted["content"]) == CONTENT_LENGTH_MAX


def test_execute_url_adds_the_api_version_and_refuses_other_urls() -> None:
    assert execute_url("https://example.test/api/webhooks/1/tok") == "https://example.test/api/v10/webhooks/1/tok"
    assert execute_url("https://example.test/api/v9/webhooks/1/tok") == "https://example.test/api/v10/webhooks/1/tok"
    with pytest.raises(ValueError):
        execute_url("https://example.test/api/channels/1")


# --- Linear markdown ------------------------------------------------------------------------------


def test_fit_markdown_keeps_the_header_and_drops_whole_sections_saying_how_many() -> None:
    text = payloads.fit_markdown("HEADER", ["a" * 40, "b" * 40, "c" * 40], 120, "example(s)")
    assert text.startswith("HEADER\n\n" + "a" * 40)
    assert "b" * 40 not in text and "_2 more example(s) not shown" in text
    assert len(text) <= 120


def test_fit_markdown_truncates_an_oversized_header() -> None:
    assert len(payloads.fit_markdown("h" * 500, ["x"], 100, "example(s)")) <= 100


def test_conflict_issue_carries_reason_counts_offsets_versions_rationale_and_link() -> None:
    (conflict,) = group([rejection(10), rejection(12, rationale="``` injected ```"), rejection(11)])
    totals = payloads.ConflictTotals(3, 10, 12)
    draft = payloads.conflict_issue(conflict, totals, "http://dash.test")
    assert draft.title == "INSUFFICIENT_BALANCE: agent-a on transfer (2026-01-01)"
    assert "**3** proposal(s)" in draft.description and "Source offsets: 10 … 12" in draft.description
    assert "validator `law-1.4.0` · policy v7" in draft.description and "cheap now" in draft.description
    assert f"http://dash.test/rejections?conflict={conflict.conflict_id}" in draft.description
    assert "(http://dash.test/rejections?offset=10)" in draft.description  # each example links its rejection
    assert "``` injected" not in draft.description  # model text cannot close the code fence
    assert draft.attachment_url.endswith(conflict.conflict_id) and draft.priority == 2


def test_long_descriptions_stay_within_the_bound() -> None:
    many = [rejection(n, rationale="r" * 500) for n in range(200)]
    (conflict,) = group(many)
    draft = payloads.conflict_issue(conflict, payloads.ConflictTotals(200, 0, 199), "http://dash.test")
    assert len(draft.description) <= payloads.LINEAR_DESCRIPTION_LENGTH_MAX
    body = payloads.conflict_comment(conflict, payloads.ConflictTotals(400, 0, 199), "linear:comment:c:3", "http://d")
    assert len(body) <= payloads.LINEAR_COMMENT_LENGTH_MAX
    assert "**+200** new occurrence(s); **400** in total." in body
    assert body.endswith("`gridgov-delivery: linear:comment:c:3`")


def test_incidents_open_urgent_issues() -> None:
    incident = IncidentRecord(
        incident_id="inc-1",
        kind="breaker_trip",
        title="Breaker tripped",
        detail="load 131%",
        seq=42,
        telemetry={"load_pct": 131},
        validator_version="law-1.4.0",
        policy_version=7,
    )
    draft = payloads.incident_issue(incident, "http://dash.test")
    assert draft.priority == 1 and draft.title == "[breaker_trip] Breaker tripped"
    assert "| load_pct | 131 |" in draft.description
    assert draft.attachment_url == "http://dash.test/governance?incident=inc-1"  # the breaker's page
    assert "ledger seq [42](http://dash.test/ledger?seq=42)" in draft.description
    anomaly = payloads.incident_issue(incident.model_copy(update={"kind": "replay_anomaly"}), "http://dash.test/")
    assert anomaly.attachment_url == "http://dash.test/replay?incident=inc-1"


def test_every_alert_and_incident_kind_links_to_a_dashboard_page() -> None:
    pages = {"overview", "live", "flows", "market", "rejections", "ledger", "governance", "replay"}  # dashboard.app
    assert set(payloads.PAGE_BY_KIND) == set(get_args(AlertKind))
    assert set(payloads.PAGE_BY_KIND.values()) <= pages


def test_alerts_link_their_kinds_page_and_each_ledger_entry() -> None:
    trip, at_s = alert(42, "breaker_trip")
    spike = AlertRecord(**{**alert(7)[0].model_dump(), "seq": None, "source_offset": 99})
    message = payloads.alerts_message([(trip, at_s), (spike, at_s + 1)], DASHBOARD + "/")
    by_kind = {e["title"].split(":")[0]: e for e in message["embeds"]}
    assert by_kind["breaker_trip"]["url"] == "http://dash.test/governance"
    assert by_kind["rejection_spike"]["url"] == "http://dash.test/rejections"
    assert "[seq 42](http://dash.test/ledger?seq=42)" in by_kind["breaker_trip"]["fields"][0]["value"]
    assert "[offset 99](http://dash.test/ledger?offset=99)" in by_kind["rejection_spike"]["fields"][0]["value"]


# --- grouping -------------------------------------------------------------------------------------


def test_grouping_keys_on_reason_agent_and_kind_in_order_of_first_occurrence() -> None:
    batch = [
        rejection(1, agent="agent-b"),
        rejection(2),
        rejection(3, agent="agent-b"),
        rejection(4, kind="accept"),
        rejection(5, reason="PRICE_CEILING"),
        rejection(6, agent=None, kind=None),
    ]
    conflicts = group(batch)
    assert [c.key for c in conflicts] == [
        ConflictKey("INSUFFICIENT_BALANCE", "agent-b", "transfer"),
        ConflictKey("INSUFFICIENT_BALANCE", "agent-a", "transfer"),
        ConflictKey("INSUFFICIENT_BALANCE", "agent-a", "accept"),
        ConflictKey("PRICE_CEILING", "agent-a", "transfer"),
        ConflictKey("INSUFFICIENT_BALANCE", UNAUTHENTICATED, MISSING_PART),
    ]
    assert [r.offset for r in conflicts[0].rejections] == [1, 3]


def test_conflict_ids_are_stable_and_change_with_the_window() -> None:
    same_day = group([rejection(1, at_s=NOON_S), rejection(2, at_s=NOON_S + 3600)])
    assert len(same_day) == 1 and same_day[0].window_start == datetime(2026, 1, 1, tzinfo=UTC)
    assert group([rejection(9, at_s=NOON_S)])[0].conflict_id == same_day[0].conflict_id
    next_day = group([rejection(1, at_s=NOON_S), rejection(2, at_s=NOON_S + DAY_S)])
    assert len(next_day) == 2 and next_day[0].conflict_id != next_day[1].conflict_id


# --- clients' classification (httpx.MockTransport: no sockets) -------------------------------------


def linear_answering(status: int, body: dict, headers: dict[str, str] | None = None) -> LinearClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers=headers))
    return LinearClient(httpx.Client(transport=transport), "lin_api_x", "http://linear.test/graphql")


RATELIMITED = {"errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}}]}


def test_linear_rate_limits_in_400_and_429_are_retryable_with_the_servers_wait() -> None:
    with pytest.raises(RetryableError) as caught:
        linear_answering(400, RATELIMITED, {"Retry-After": "2.5"}).execute("query { viewer { id } }", {})
    assert caught.value.retry_after_s == 2.5 and not caught.value.maybe_applied
    reset_ms = str(int((time.time() + 30) * 1000))
    with pytest.raises(RetryableError) as caught:
        linear_answering(429, RATELIMITED, {"X-RateLimit-Requests-Reset": reset_ms}).execute("q", {})
    assert 28 < (caught.value.retry_after_s or 0) <= 30


def test_linear_graphql_errors_in_a_200_are_permanent_and_5xx_retryable() -> None:
    invalid = {"errors": [{"message": "Argument Validation Error", "extensions": {"code": "INVALID_INPUT"}}]}
    with pytest.raises(PermanentError):
        linear_answering(200, invalid).execute("q", {})
    with pytest.raises(RetryableError):
        linear_answering(503, {}).execute("q", {})


def test_linear_holds_requests_while_the_budget_is_spent_and_sends_keys_bare() -> None:
    reset_ms = str(int((time.time() + 10) * 1000))
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"X-RateLimit-Requests-Remaining": "0", "X-RateLimit-Requests-Reset": reset_ms}
        return httpx.Response(200, json={"data": {"viewer": {"id": "u"}}}, headers=headers)

    client = LinearClient(httpx.Client(transport=httpx.MockTransport(answer)), "lin_api_x", "http://linear.test")
    assert client.ready_in_s() == 0.0
    client.execute("q", {})
    assert 8 < client.ready_in_s() <= 10
    assert seen[0].headers["Authorization"] == "lin_api_x"


def test_linear_holds_for_the_reset_even_if_the_wall_clock_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    now_s = time.time()
    headers = {"X-RateLimit-Requests-Remaining": "0", "X-RateLimit-Requests-Reset": str(int((now_s + 10) * 1000))}
    answer = httpx.Response(200, json={"data": {"viewer": {"id": "u"}}}, headers=headers)
    client = LinearClient(httpx.Client(transport=httpx.MockTransport(lambda _: answer)), "k", "http://linear.test")
    client.execute("q", {})
    monkeypatch.setattr(time, "time", lambda: now_s + 3600)  # the clock is stepped an hour ahead
    assert 8 < client.ready_in_s() <= 10


def test_discord_reads_retry_after_from_the_body_and_the_bucket_from_headers() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["wait"] == "true"
        body = {"message": "You are being rate limited.", "retry_after": 1.25, "global": False}
        return httpx.Response(429, json=body, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.25"})

    webhook = DiscordWebhook(httpx.Client(transport=httpx.MockTransport(answer)), "http://d.test/api/webhooks/1/t")
    with pytest.raises(RetryableError) as caught:
        webhook.post({"content": "x"})
    assert caught.value.retry_after_s == 1.25
    assert 1.0 < webhook.ready_in_s() <= 1.25


def test_retry_delays_honour_the_servers_wait_and_otherwise_grow_within_the_cap() -> None:
    policy = RetryPolicy(attempts_max=5, backoff_base_s=0.5, backoff_cap_s=2.0)
    assert 1.5 <= policy.delay_s(0, 1.5) <= 1.65
    assert all(0 <= policy.delay_s(attempt, None) <= 2.0 for attempt in range(10))
