"""A local stand-in for Discord's execute-webhook endpoint, with Discord's limits, bodies and rate limits.

``POST /api/v10/webhooks/{id}/{token}?wait=true`` answers 200 with the created message, a full
``MessageResponse`` (id, type, content, channel_id, author, attachments, embeds, mentions, ...; 204
without ``wait``). It enforces what Discord enforces: a token, content ≤ 2,000, ≤ 10 embeds, title
256, description 4,096, ≤ 25 fields of 256/1,024 (non-empty), footer 2,048, author 256, 6,000 characters
across embeds, refused with 400 ``{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`` whose
``errors`` nest like the payload (``{"embeds": {"0": {"description": {"_errors": [{"code":
"BASE_TYPE_MAX_LENGTH", "message": ...}]}}}}``).

Each webhook (any id, with the stand-in's token) has a bucket of ``bucket_size`` requests per
``bucket_window_s``, announced on every response (``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/
-Bucket``). A request into an empty bucket gets 429 and counts as a violation; so does any request,
to any webhook, while a global limit lasts. A 429's body is Discord's rate-limit error,
``{"message": "You are being rate limited.", "retry_after": 1.5, "global": false, "code": 0}``, with
``Retry-After`` (whole seconds, rounded up) and ``X-RateLimit-Scope``; a global one says
``"global": true`` and ``X-RateLimit-Global: true`` and carries no bucket headers.

Tests program it: ``fail(500, n)``, ``rate_limit(n, s)`` (forced 429s with ``retry_after: s``;
``global_limit=True`` for the global limit, which then holds every webhook for s), and
``hold(after_apply)`` to park the next request (after creating the message, or before) until
``release()``. Every request is recorded with its arrival time and User-Agent.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.standins.base import Answer, Fault, ProgrammableStandIn, read_body

WEBHOOK_ID = "1234567890"
WEBHOOK_TOKEN = "standin-token"
WEBHOOK_NAME = "Grid governance"
CHANNEL_ID = "987654321098765432"
DISCORD_EPOCH_MS = 1_420_070_400_000
BUCKET_SIZE = 5
BUCKET_WINDOW_S = 2.0
LIMITS = {
    "content": 2000,
    "title": 256,
    "description": 4096,
    "name": 256,
    "value": 1024,
    "footer": 2048,
    "author": 256,
}
EMBEDS_COUNT_MAX = 10
FIELDS_COUNT_MAX = 25
EMBEDS_TOTAL_LENGTH_MAX = 6000
RATE_LIMIT_MESSAGE = "You are being rate limited."
INVALID_FORM_BODY = 50035
_WEBHOOK_PATH = re.compile(r"/api/v10/webhooks/(\d+)/([^/]+)")

Path = tuple[str, ...]  # where in the payload a problem is, as Discord nests its errors


@dataclass(frozen=True, slots=True)
class Request:
    arrived_s: float  # time.monotonic()
    status: int
    retry_after_s: float | None
    payload: Any
    user_agent: str | None = None
    webhook_id: str | None = None
    global_limit: bool = False  # a 429 for the global limit


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    code: str
    message: str


@dataclass
class _Bucket:
    remaining: int
    reset_at_s: float = 0.0  # monotonic


def _too_long(path: Path, text: str, length_max: int) -> list[Problem]:
    if len(text) <= length_max:
        return []
    return [Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {length_max} or fewer in length.")]


def _too_many(path: Path, items: list[Any], count_max: int) -> list[Problem]:
    if len(items) <= count_max:
        return []
    return [Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {count_max} or fewer in length.")]


def _field_problems(path: Path, field: dict[str, Any]) -> list[Problem]:
    problems = []
    for key in ("name", "value"):
        text = field.get(key) or ""
        if not text:
            problems.append(Problem((*path, key), "BASE_TYPE_REQUIRED", "This field is required"))
        problems += _too_long((*path, key), text, LIMITS[key])
    return problems


def _embed_problems(index: int, embed: dict[str, Any]) -> tuple[list[Problem], int]:
    """One embed's problems, and the characters it counts against the 6,000 total."""
    at: Path = ("embeds", str(index))
    texts = {"title": embed.get("title", ""), "description": embed.get("description", "")}
    problems = [p for key, text in texts.items() for p in _too_long((*at, key), text, LIMITS[key])]
    footer = embed.get("footer", {}).get("text", "")
    problems += _too_long((*at, "footer", "text"), footer, LIMITS["footer"])
    author = embed.get("author", {}).get("name", "")
    problems += _too_long((*at, "author", "name"), author, LIMITS["author"])
    fields = embed.get("fields", [])
    problems += _too_many((*at, "fields"), fields, FIELDS_COUNT_MAX)
    for number, field in enumerate(fields):
        problems += _field_problems((*at, "fields", str(number)), field)
    length = sum(map(len, texts.values())) + len(footer) + len(author)
    length += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in fields)
    return problems, length


def form_problems(payload: dict[str, Any]) -> list[Problem]:
    """What Discord would refuse in ``payload``, where and why; empty when it is acceptable."""
    problems = _too_long(("content",), payload.get("content", ""), LIMITS["content"])
    embeds = payload.get("embeds", [])
    problems += _too_many(("embeds",), embeds, EMBEDS_COUNT_MAX)
    total = 0
    for index, embed in enumerate(embeds):
        found, length = _embed_problems(index, embed)
        problems += found
        total += length
    if total > EMBEDS_TOTAL_LENGTH_MAX:
        message = f"Embed size exceeds maximum size of {EMBEDS_TOTAL_LENGTH_MAX}"
        problems.append(Problem(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", message))
    return problems


def limit_violations(payload: dict[str, Any]) -> list[str]:
    """Where ``payload`` breaks Discord's limits (``embeds.0.description``); empty when it is acceptable."""
    return [".".join(p.path) for p in form_problems(payload)]


def form_errors(problems: list[Problem]) -> dict[str, Any]:
    """Discord's nested ``errors`` object: each path a chain of objects ending in ``_errors``."""
    errors: dict[str, Any] = {}
    for problem in problems:
        node = errors
        for key in problem.path:
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return errors


def _snowflake(sequence: int) -> str:
    return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (sequence & 0xFFF))


def message_response(message_id: str, webhook_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What Discord returns for a webhook message (``MessageResponse``): the author is the webhook."""
    author = {
        "id": webhook_id,
        "username": payload.get("username") or WEBHOOK_NAME,
        "avatar": None,
        "discriminator": "0000",
        "public_flags": 0,
        "flags": 0,
        "bot": True,
        "global_name": None,
    }
    return {
        "id": message_id,
        "type": 0,
        "content": payload.get("content", ""),
        "channel_id": CHANNEL_ID,
        "author": author,
        "attachments": [],
        "embeds": [{"type": "rich", **embed} for embed in payload.get("embeds", [])],
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
        "mention_everyone": False,
        "tts": bool(payload.get("tts", False)),
        "timestamp": datetime.now(UTC).isoformat(),
        "edited_timestamp": None,
        "flags": int(payload.get("flags", 0)),
        "components": [],
        "webhook_id": webhook_id,
    }


class DiscordStandIn(ProgrammableStandIn[Request]):
    """``with DiscordStandIn() as discord:`` accepts webhook posts on ``discord.webhook_url``."""

    def __init__(self, bucket_size: int = BUCKET_SIZE, bucket_window_s: float = BUCKET_WINDOW_S) -> None:
        super().__init__("discord-standin")
        self._bucket_size = bucket_size
        self._bucket_window_s = bucket_window_s
        self._buckets: dict[str, _Bucket] = {}  # per webhook id
        self._global_until_s = 0.0  # monotonic: no request before this, to any webhook
        self.messages: list[dict[str, Any]] = []
        self.violations = 0  # requests sent into an empty bucket, or during a global limit

    @property
    def webhook_url(self) -> str:
        """As Discord shows it to a user: without the API version, which the client adds."""
        return self.webhook_url_of(WEBHOOK_ID)

    def webhook_url_of(self, webhook_id: str) -> str:
        """Another webhook of the same app: its own bucket, the same global limit."""
        return f"{self.origin}/api/webhooks/{webhook_id}/{WEBHOOK_TOKEN}"

    def rate_limit(self, count: int, retry_after_s: float, global_limit: bool = False) -> None:
        """Answer the next ``count`` requests 429 with ``retry_after_s``; a global limit also holds
        every webhook for that long."""
        self._queue(Fault(429, retry_after_s, rate_limited=True, global_limit=global_limit), count)

    def hold(self, after_apply: bool) -> threading.Event:
        """Park the next request; returns an event set once one is parked."""
        return self._hold_next(after_apply)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[Request]]:
        with self._lock:
            return list(self.messages), list(self._requests)

    # --- rate limits, under the lock ----------------------------------------------------------------

    def _bucket(self, webhook_id: str, now_s: float) -> _Bucket:
        bucket = self._buckets.setdefault(webhook_id, _Bucket(self._bucket_size))
        if now_s >= bucket.reset_at_s:
            bucket.remaining, bucket.reset_at_s = self._bucket_size, now_s + self._bucket_window_s
        return bucket

    def _limit_fault(self, webhook_id: str, now_s: float) -> Fault | None:
        """A 429 for a request sent during a global limit or into an empty bucket (a violation), else
        None after spending one request from the webhook's bucket."""
        if now_s < self._global_until_s:
            self.violations += 1
            return Fault(429, self._global_until_s - now_s, rate_limited=True, global_limit=True)
        bucket = self._bucket(webhook_id, now_s)
        if bucket.remaining == 0:
            self.violations += 1
            return Fault(429, bucket.reset_at_s - now_s, rate_limited=True)
        bucket.remaining -= 1
        return None

    def _bucket_headers(self, webhook_id: str, now_s: float) -> dict[str, str]:
        bucket = self._bucket(webhook_id, now_s)
        reset_after_s = max(0.0, bucket.reset_at_s - now_s)
        return {
            "X-RateLimit-Limit": str(self._bucket_size),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after_s:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after_s:.3f}",
            "X-RateLimit-Bucket": f"standin-bucket-{webhook_id}",
        }

    def _rate_limited(self, fault: Fault, webhook_id: str, now_s: float) -> tuple[int, Any, dict[str, str]]:
        retry_after_s = fault.retry_after_s or 0.0
        # Discord's rate-limit error; "code" is 0 unless a specific limit names its own error code
        body = {
            "message": RATE_LIMIT_MESSAGE,
            "retry_after": round(retry_after_s, 3),
            "global": fault.global_limit,
            "code": 0,
        }
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        if fault.global_limit:
            self._global_until_s = max(self._global_until_s, now_s + retry_after_s)
            return 429, body, headers | {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        bucket = self._bucket(webhook_id, now_s)  # as Discord says on a 429: empty, refilled after retry_after
        bucket.remaining, bucket.reset_at_s = 0, now_s + retry_after_s
        return 429, body, headers | self._bucket_headers(webhook_id, now_s) | {"X-RateLimit-Scope": "user"}

    # --- answering ----------------------------------------------------------------------------------

    def _answer(
        self, webhook_id: str | None, query: str, payload: Any, now_s: float
    ) -> tuple[int, Any, dict[str, str]]:
        if webhook_id is None:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}, {}
        fault = self._next_fault() or self._limit_fault(webhook_id, now_s)
        if fault is not None and (fault.rate_limited or fault.status == 429):
            return self._rate_limited(fault, webhook_id, now_s)
        headers = self._bucket_headers(webhook_id, now_s)
        if fault is not None:
            return fault.status, {"message": "Internal Server Error", "code": 0}, headers
        if not isinstance(payload, dict):
            return 400, {"message": "The request body contains invalid JSON.", "code": 50109}, headers
        problems = form_problems(payload)
        if problems:
            body = {"code": INVALID_FORM_BODY, "message": "Invalid Form Body", "errors": form_errors(problems)}
            return 400, body, headers
        message = message_response(_snowflake(len(self.messages)), webhook_id, payload)
        self.messages.append(message)
        wait = parse_qs(query).get("wait", ["false"])[0] == "true"
        return (200, message, headers) if wait else (204, None, headers)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_s = time.monotonic()
        parts = urlsplit(handler.path)
        match = _WEBHOOK_PATH.fullmatch(parts.path)
        webhook_id = match[1] if match and match[2] == WEBHOOK_TOKEN else None
        payload = json.loads(read_body(handler) or b"null")
        user_agent = handler.headers.get("User-Agent")

        def answer() -> Answer:
            status, body, headers = self._answer(webhook_id, parts.query, payload, arrived_s)
            retry_after = body.get("retry_after") if status == 429 else None
            is_global = status == 429 and body.get("global") is True
            self._record(Request(arrived_s, status, retry_after, payload, user_agent, webhook_id, is_global))
            headers = {"Content-Type": "application/json", **headers}
            return status, json.dumps(body).encode() if body is not None else b"", headers

        # a request parked before it was applied is lost with its client: nothing created
        self._serve_unless_held(handler, answer)
