"""DiscordWebhook through httpx against the local Discord stand-in, and the stand-in's bodies as
Discord's API reference gives them: the rate-limit error (bucket and global), the nested 400 form
errors, the created message, and the User-Agent every request carries."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.discord import DISTRIBUTION, DiscordWebhook, GlobalRateLimit, execute_url, form_errors
from connectors.retry import PermanentError, RetryableError, RetryPolicy, Waiter, call_with_retries
from tests.standins.discord_server import WEBHOOK_ID, DiscordStandIn

CLOCK_SLACK_S = 0.1
OTHER_WEBHOOK_ID = "2233445566"
OVERSIZED = {"embeds": [{"title": "breaker_trip", "description": "x" * 5000}]}
OVERSIZED_ERRORS = {
    "code": 50035,
    "message": "Invalid Form Body",
    "errors": {
        "embeds": {
            "0": {
                "description": {
                    "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 4096 or fewer in length."}]
                }
            }
        }
    },
}
# MessageResponse's required fields in Discord's OpenAPI spec, and what a webhook message adds
MESSAGE_FIELDS = {
    "id", "type", "content", "channel_id", "author", "attachments", "embeds", "mentions", "mention_roles",
    "pinned", "mention_everyone", "tts", "timestamp", "edited_timestamp", "flags", "components", "webhook_id",
}  # fmt: skip
USER_FIELDS = {"id", "username", "avatar", "discriminator", "public_flags", "flags", "bot", "global_name"}


@pytest.fixture
def discord() -> Iterator[DiscordStandIn]:
    with DiscordStandIn() as standin:
        yield standin


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def raw_post(discord: DiscordStandIn, payload: dict[str, Any], wait: bool = True) -> httpx.Response:
    return httpx.post(execute_url(discord.webhook_url), params={"wait": str(wait).lower()}, json=payload)


# --- 5. the stand-in's bodies ---------------------------------------------------------------------


def test_a_rate_limit_answer_is_discords_rate_limit_error_with_its_headers(discord: DiscordStandIn) -> None:
    discord.rate_limit(1, 1.5)
    answer = raw_post(discord, {"content": "x"})
    assert answer.status_code == 429
    assert answer.json() == {"message": "You are being rate limited.", "retry_after": 1.5, "global": False, "code": 0}
    assert answer.headers["Retry-After"] == "2"  # whole seconds, rounded up
    assert answer.headers["X-RateLimit-Remaining"] == "0" and answer.headers["X-RateLimit-Reset-After"] == "1.500"
    assert all(name in answer.headers for name in ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Bucket"))
    assert answer.headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in answer.headers


def test_a_global_rate_limit_answer_says_global_and_names_no_bucket(discord: DiscordStandIn) -> None:
    discord.rate_limit(1, 0.25, global_limit=True)
    answer = raw_post(discord, {"content": "x"})
    assert answer.status_code == 429
    assert answer.json() == {"message": "You are being rate limited.", "retry_after": 0.25, "global": True, "code": 0}
    assert answer.headers["X-RateLimit-Global"] == "true" and answer.headers["X-RateLimit-Scope"] == "global"
    assert answer.headers["Retry-After"] == "1" and "X-RateLimit-Remaining" not in answer.headers


def test_an_oversized_embed_is_refused_with_discords_nested_50035_body(discord: DiscordStandIn) -> None:
    answer = raw_post(discord, OVERSIZED)
    assert answer.status_code == 400 and answer.json() == OVERSIZED_ERRORS
    assert discord.messages == []


def test_a_created_message_is_a_full_message_response(discord: DiscordStandIn) -> None:
    embed = {"title": "breaker_trip ×2", "description": "feeder 3", "color": 0xE74C3C, "fields": []}
    answer = raw_post(discord, {"content": "**2 alerts**", "username": "grid", "embeds": [embed]})
    assert answer.status_code == 200
    message = answer.json()
    assert set(message) >= MESSAGE_FIELDS
    assert set(message["author"]) >= USER_FIELDS
    assert message["author"]["id"] == message["webhook_id"] == WEBHOOK_ID and message["author"]["username"] == "grid"
    assert message["content"] == "**2 alerts**" and message["embeds"] == [{"type": "rich", **embed}]
    assert re.fullmatch(r"[1-9][0-9]*", message["id"]) and re.fullmatch(r"[1-9][0-9]*", message["channel_id"])
    assert message["edited_timestamp"] is None and message["timestamp"].endswith("+00:00")
    assert discord.messages == [message]
    assert raw_post(discord, {"content": "no wait"}, wait=False).status_code == 204


# --- 6. the client reads "global" and the nested errors ------------------------------------------


def test_a_global_rate_limit_holds_every_webhook_until_retry_after(discord: DiscordStandIn, http: httpx.Client) -> None:
    shared = GlobalRateLimit()
    first = DiscordWebhook(http, discord.webhook_url, shared)
    other = DiscordWebhook(http, discord.webhook_url_of(OTHER_WEBHOOK_ID), shared)
    discord.rate_limit(1, 0.5, global_limit=True)
    with pytest.raises(RetryableError) as caught:
        first.post({"content": "drew the global limit"})
    assert caught.value.retry_after_s == 0.5 and "global" in str(caught.value)
    assert 0.5 - CLOCK_SLACK_S < other.ready_in_s() <= 0.5  # its own bucket is full: the global limit holds it
    call_with_retries(
        lambda: other.post({"content": "waited"}), RetryPolicy(attempts_max=1), Waiter(), other.ready_in_s
    )
    _, requests = discord.snapshot()
    assert [(r.webhook_id, r.status) for r in requests] == [(WEBHOOK_ID, 429), (OTHER_WEBHOOK_ID, 200)]
    assert requests[1].arrived_s - requests[0].arrived_s >= 0.5 - CLOCK_SLACK_S
    assert discord.violations == 0


def test_a_bucket_rate_limit_holds_only_its_own_webhook(discord: DiscordStandIn, http: httpx.Client) -> None:
    shared = GlobalRateLimit()
    first = DiscordWebhook(http, discord.webhook_url, shared)
    other = DiscordWebhook(http, discord.webhook_url_of(OTHER_WEBHOOK_ID), shared)
    discord.rate_limit(1, 0.5)
    with pytest.raises(RetryableError) as caught:
        first.post({"content": "drew its bucket's limit"})
    assert caught.value.retry_after_s == 0.5 and "bucket" in str(caught.value)
    assert 0.5 - CLOCK_SLACK_S < first.ready_in_s() <= 0.5
    assert other.ready_in_s() == 0.0 and shared.ready_in_s() == 0.0
    assert other.post({"content": "not held"})
    assert discord.violations == 0


def test_a_refused_payload_reads_as_discords_field_errors(discord: DiscordStandIn, http: httpx.Client) -> None:
    webhook = DiscordWebhook(http, discord.webhook_url, GlobalRateLimit())
    with pytest.raises(PermanentError) as caught:
        webhook.post(OVERSIZED)
    assert str(caught.value) == (
        "Discord HTTP 400: Invalid Form Body (code 50035); "
        "embeds.0.description: Must be 4096 or fewer in length. (BASE_TYPE_MAX_LENGTH)"
    )


def test_nested_form_errors_flatten_to_one_line_per_field() -> None:
    errors = {
        "content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]},
        "embeds": {
            "0": {"fields": {"3": {"value": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "Required"}]}}}},
            "_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}],
        },
    }
    assert form_errors(errors) == [
        "content: Must be 2000 or fewer in length. (BASE_TYPE_MAX_LENGTH)",
        "embeds.0.fields.3.value: Required (BASE_TYPE_REQUIRED)",
        "embeds: Embed size exceeds maximum size of 6000 (MAX_EMBED_SIZE_EXCEEDED)",
    ]
    assert form_errors(None) == [] and form_errors({"_errors": "not a list"}) == []


# --- 7. the User-Agent ----------------------------------------------------------------------------


def test_requests_carry_a_discordbot_user_agent_with_the_project_version(
    discord: DiscordStandIn, http: httpx.Client
) -> None:
    message_id = DiscordWebhook(http, discord.webhook_url, GlobalRateLimit()).post({"content": "hello"})
    (request,) = discord.requests
    match = re.fullmatch(r"DiscordBot \((\S+), (\S+)\)", request.user_agent or "")
    assert match, request.user_agent
    assert match[2] == importlib.metadata.version(DISTRIBUTION)
    assert message_id == discord.messages[0]["id"]
