"""A local stand-in for Discord's execute-webhook endpoint, with Discord's limits and rate-limit bucket.

``POST /api/v10/webhooks/{id}/{token}?wait=true`` answers 200 with the created message (204 without
``wait``). It enforces what Discord enforces: a token, content ≤ 2,000, ≤ 10 embeds, title 256,
description 4,096, ≤ 25 fields of 256/1,024 (non-empty), footer 2,048, 6,000 characters across
embeds (400 with code 50035 otherwise); and a bucket of ``bucket_size`` requests per
``bucket_window_s``, announced on every response (``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/
-Bucket``). A request into an empty bucket gets 429 with ``retry_after`` and counts as a violation.

Tests program it: ``fail(500, n)``, ``rate_limit(n, s)`` (forced 429s with ``retry_after: s``), and
``hold(after_apply)`` to park the next request (after creating the message, or before) until
``release()``. Every request is recorded with its arrival time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.standins.base import Answer, Fault, ProgrammableStandIn, read_body

WEBHOOK_ID = "1234567890"
WEBHOOK_TOKEN = "standin-token"
BUCKET_SIZE = 5
BUCKET_WINDOW_S = 2.0
LIMITS = {"content": 2000, "title": 256, "description": 4096, "name": 256, "value": 1024, "footer": 2048}
EMBEDS_COUNT_MAX = 10
FIELDS_COUNT_MAX = 25
EMBEDS_TOTAL_LENGTH_MAX = 6000


@dataclass(frozen=True, slots=True)
class Request:
    arrived_s: float  # time.monotonic()
    status: int
    retry_after_s: float | None
    payload: Any


def limit_violations(payload: dict[str, Any]) -> list[str]:
    """What Discord would refuse in ``payload``; empty when it is acceptable."""
    problems = []
    if len(payload.get("content", "")) > LIMITS["content"]:
        problems.append("content")
    embeds = payload.get("embeds", [])
    if len(embeds) > EMBEDS_COUNT_MAX:
        problems.append("embeds count")
    total = 0
    for index, embed in enumerate(embeds):
        texts = {"title": embed.get("title", ""), "description": embed.get("description", "")}
        texts["footer"] = embed.get("footer", {}).get("text", "")
        problems += [f"embeds[{index}].{k}" for k, v in texts.items() if len(v) > LIMITS[k]]
        fields = embed.get("fields", [])
        if len(fields) > FIELDS_COUNT_MAX:
            problems.append(f"embeds[{index}].fields count")
        for f in fields:
            if not f.get("name") or not f.get("value"):
                problems.append(f"embeds[{index}].fields: empty name or value")
            problems += [f"embeds[{index}].fields.{k}" for k in ("name", "value") if len(f.get(k, "")) > LIMITS[k]]
        total += sum(len(v) for v in texts.values()) + sum(
            len(f.get("name", "")) + len(f.get("value", "")) for f in fields
        )
    if total > EMBEDS_TOTAL_LENGTH_MAX:
        problems.append("embeds total")
    return problems


class DiscordStandIn(ProgrammableStandIn[Request]):
    """``with DiscordStandIn() as discord:`` accepts webhook posts on ``discord.webhook_url``."""

    def __init__(self, bucket_size: int = BUCKET_SIZE, bucket_window_s: float = BUCKET_WINDOW_S) -> None:
        super().__init__("discord-standin")
        self._bucket_size = bucket_size
        self._bucket_window_s = bucket_window_s
        self._remaining = bucket_size
        self._bucket_reset_at_s = 0.0  # monotonic
        self.messages: list[dict[str, Any]] = []
        self.violations = 0  # requests sent into an empty bucket

    @property
    def webhook_url(self) -> str:
        """As Discord shows it to a user: without the API version, which the client adds."""
        return f"{self.origin}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    def hold(self, after_apply: bool) -> threading.Event:
        """Park the next request; returns an event set once one is parked."""
        return self._hold_next(after_apply)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[Request]]:
        with self._lock:
            return list(self.messages), list(self._requests)

    def _take_token(self, now_s: float) -> float | None:
        """Spend one request from the bucket; None if spent, else seconds until the bucket refills."""
        if now_s >= self._bucket_reset_at_s:
            self._remaining = self._bucket_size
            self._bucket_reset_at_s = now_s + self._bucket_window_s
        if self._remaining == 0:
            return None
        self._remaining -= 1
        return self._bucket_reset_at_s - now_s

    def _bucket_headers(self, now_s: float) -> dict[str, str]:
        reset_after_s = max(0.0, self._bucket_reset_at_s - now_s)
        return {
            "X-RateLimit-Limit": str(self._bucket_size),
            "X-RateLimit-Remaining": str(self._remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after_s:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after_s:.3f}",
            "X-RateLimit-Bucket": "standin-bucket",
        }

    def _answer(self, path: str, query: str, payload: Any, now_s: float) -> tuple[int, Any, dict[str, str]]:
        if path != f"/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}":
            return 401, {"message": "Invalid Webhook Token", "code": 50027}, {}
        fault = self._next_fault()
        if fault is None and self._take_token(now_s) is None:
            self.violations += 1
            fault = Fault(429, self._bucket_reset_at_s - now_s)
        if fault is not None and fault.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": fault.retry_after_s, "global": False}
            return 429, body, {"Retry-After": str(max(1, round(fault.retry_after_s or 0)))}
        if fault is not None:
            return fault.status, {"message": "Internal Server Error", "code": 0}, {}
        problems = limit_violations(payload) if isinstance(payload, dict) else ["body"]
        if problems:
            return 400, {"code": 50035, "message": "Invalid Form Body", "errors": problems}, {}
        message = {"id": str(1_000_000 + len(self.messages)), "webhook_id": WEBHOOK_ID, **payload}
        self.messages.append(message)
        wait = parse_qs(query).get("wait", ["false"])[0] == "true"
        return (200, message, {}) if wait else (204, None, {})

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_s = time.monotonic()
        parts = urlsplit(handler.path)
        payload = json.loads(read_body(handler) or b"null")

        def answer() -> Answer:
            status, body, headers = self._answer(parts.path, parts.query, payload, arrived_s)
            retry_after = body.get("retry_after") if status == 429 else None
            self._record(Request(arrived_s, status, retry_after, payload))
            headers = {"Content-Type": "application/json", **headers, **self._bucket_headers(time.monotonic())}
            return status, json.dumps(body).encode() if body is not None else b"", headers

        # a request parked before it was applied is lost with its client: nothing created
        self._serve_unless_held(handler, answer)
