"""Discord webhook client and the payload limits Discord enforces.

``DiscordWebhook.post`` sends one message with ``?wait=true``, so a 200 carrying the created message
is the confirmation the sink waits for before it acknowledges anything (without ``wait`` Discord
answers 204 before the message exists). One call is one request; retrying is the caller's job
(``connectors.retry``), with failures classified as ``RetryableError`` (transport, 5xx, 429 with the
server's ``retry_after``) or ``PermanentError`` (400 for a payload Discord rejects, 401/403/404 for a
webhook that is gone; repeating those risks an IP ban and never helps).

Discord publishes its bucket state on every response (``X-RateLimit-Remaining``,
``X-RateLimit-Reset-After`` in seconds); ``ready_in_s()`` turns "0 remaining, reset in 1.2 s" into a
wait before the next request, so the sink does not spend a request to learn it is limited.

``fit_payload`` clamps any payload to Discord's limits (content 2,000 characters; 10 embeds; title
256, description 4,096, 25 fields of 256/1,024, footer 2,048; 6,000 characters across all embeds),
truncating with an ellipsis, and dropping trailing fields and embeds only when the total demands it.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.retry import PermanentError, RateLimitBucket, RetryableError

API_VERSION = 10
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 15.0
TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)

CONTENT_LENGTH_MAX = 2000
USERNAME_LENGTH_MAX = 80
EMBEDS_COUNT_MAX = 10
EMBED_TITLE_LENGTH_MAX = 256
EMBED_DESCRIPTION_LENGTH_MAX = 4096
EMBED_FIELDS_COUNT_MAX = 25
FIELD_NAME_LENGTH_MAX = 256
FIELD_VALUE_LENGTH_MAX = 1024
FOOTER_TEXT_LENGTH_MAX = 2048
AUTHOR_NAME_LENGTH_MAX = 256
EMBEDS_TOTAL_LENGTH_MAX = 6000
ELLIPSIS = "…"
# Discord refuses empty field names and values; a zero-width space is its documented stand-in.
EMPTY_FIELD_TEXT = "\u200b"

COLOR_BY_SEVERITY = {"info": 0x3498DB, "warning": 0xF39C12, "critical": 0xE74C3C}


def execute_url(webhook_url: str) -> str:
    """``https://host/api[/vN]/webhooks/{id}/{token}`` → the v10 execute URL on the same host."""
    parts = urlsplit(webhook_url)
    segments = [s for s in parts.path.split("/") if s]
    try:
        at = segments.index("webhooks")
        webhook_id, token = segments[at + 1], segments[at + 2]
    except (ValueError, IndexError) as exc:
        raise ValueError("a Discord webhook URL ends in /webhooks/{id}/{token}") from exc
    return f"{parts.scheme}://{parts.netloc}/api/v{API_VERSION}/webhooks/{webhook_id}/{token}"


def truncate(text: str, length_max: int) -> str:
    """``text`` cut to ``length_max`` characters, the last one an ellipsis when anything was cut."""
    if len(text) <= length_max:
        return text
    return text[: max(0, length_max - len(ELLIPSIS))] + ELLIPSIS


def embed_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts against the 6,000 total for one embed."""
    fields = embed.get("fields", [])
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + sum(len(f["name"]) + len(f["value"]) for f in fields)
        + len(embed.get("footer", {}).get("text", ""))
        + len(embed.get("author", {}).get("name", ""))
    )


def _fit_field(field: dict[str, Any]) -> dict[str, Any]:
    return {
        **field,
        "name": truncate(field.get("name") or EMPTY_FIELD_TEXT, FIELD_NAME_LENGTH_MAX),
        "value": truncate(field.get("value") or EMPTY_FIELD_TEXT, FIELD_VALUE_LENGTH_MAX),
    }


def _fit_embed(embed: dict[str, Any]) -> dict[str, Any]:
    fitted = copy.deepcopy(embed)
    for key, length_max in (("title", EMBED_TITLE_LENGTH_MAX), ("description", EMBED_DESCRIPTION_LENGTH_MAX)):
        if key in fitted:
            fitted[key] = truncate(fitted[key], length_max)
    if "footer" in fitted:
        fitted["footer"]["text"] = truncate(fitted["footer"]["text"], FOOTER_TEXT_LENGTH_MAX)
    if "author" in fitted:
        fitted["author"]["name"] = truncate(fitted["author"]["name"], AUTHOR_NAME_LENGTH_MAX)
    if "fields" in fitted:
        fitted["fields"] = [_fit_field(f) for f in fitted["fields"][:EMBED_FIELDS_COUNT_MAX]]
    return fitted


def _shrink_last(embeds: list[dict[str, Any]], excess: int) -> None:
    """Remove at least one character from the end of the message: a field, description text, an embed."""
    last = embeds[-1]
    description = last.get("description", "")
    if last.get("fields"):
        last["fields"].pop()
    elif len(description) > excess + len(ELLIPSIS):
        last["description"] = truncate(description, len(description) - excess)
    elif len(embeds) > 1:
        embeds.pop()
    else:  # a lone embed's title, footer and author are capped at 2,560 together: this always fits
        last["description"] = ""


def fit_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` that Discord will accept: every length, count and the embed total in bounds."""
    fitted = dict(payload)
    if "content" in fitted:
        fitted["content"] = truncate(fitted["content"], CONTENT_LENGTH_MAX)
    if "username" in fitted:
        fitted["username"] = truncate(fitted["username"], USERNAME_LENGTH_MAX)
    embeds = [_fit_embed(e) for e in payload.get("embeds", [])[:EMBEDS_COUNT_MAX]]
    while embeds and sum(embed_length(e) for e in embeds) > EMBEDS_TOTAL_LENGTH_MAX:
        _shrink_last(embeds, sum(embed_length(e) for e in embeds) - EMBEDS_TOTAL_LENGTH_MAX)
    if "embeds" in payload:
        fitted["embeds"] = embeds
    return fitted


class DiscordWebhook:
    def __init__(self, http: httpx.Client, webhook_url: str) -> None:
        self._http = http
        self._url = execute_url(webhook_url)
        self._bucket = RateLimitBucket()

    def ready_in_s(self) -> float:
        """How long to hold the next request: 0 unless the bucket was empty at the last response."""
        return self._bucket.ready_in_s()

    def post(self, payload: dict[str, Any]) -> str:
        """Send one message and return its id once Discord has created it."""
        try:
            response = self._http.post(self._url, params={"wait": "true"}, json=payload, timeout=TIMEOUT)
        except httpx.TransportError as exc:
            raise RetryableError(f"Discord unreachable: {exc!r}") from exc
        self._remember_bucket(response)
        if response.status_code == 429:
            raise RetryableError(
                f"Discord rate limited: {response.text[:200]}", self._retry_after_s(response), maybe_applied=False
            )
        if response.status_code >= 500:
            raise RetryableError(f"Discord HTTP {response.status_code}")
        if response.status_code != 200:
            raise PermanentError(f"Discord HTTP {response.status_code}: {response.text[:300]}")
        return str(response.json()["id"])

    def _remember_bucket(self, response: httpx.Response) -> None:
        reset_after = response.headers.get("X-RateLimit-Reset-After")  # seconds to go, fractional
        reset_in_s = float(reset_after) if reset_after is not None else None
        self._bucket.remember(response.headers.get("X-RateLimit-Remaining"), reset_in_s)

    @staticmethod
    def _retry_after_s(response: httpx.Response) -> float | None:
        """The body's ``retry_after`` (seconds, fractional) or else the ``Retry-After`` header."""
        try:
            return float(response.json()["retry_after"])
        except (ValueError, KeyError, TypeError):
            header = response.headers.get("Retry-After")
            return float(header) if header is not None else None
