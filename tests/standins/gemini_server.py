"""A local stand-in for the Gemini ``generateContent`` REST endpoint.

The real google-genai client talks to it over HTTP (respx cannot intercept the SDK's transport), so
tests exercise the SDK's request building, response parsing, errors and retries exactly as in
production. Replies come from a queue the test fills; every request is recorded for assertions.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.base import StandIn, read_body, send

API_KEY_DEFAULT = "test-key"
REPLIES_QUEUED_MAX = 64
_PATH = re.compile(r"^/v1beta/models/(?P<model>[A-Za-z0-9._-]{1,80}):generateContent$")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    model: str | None
    api_key: str | None
    body: Any  # the parsed JSON body, or None when it was not JSON


def _json_reply(status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error_reply(code: int, status: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return _json_reply(code, {"error": {"code": code, "message": message, "status": status}}, headers)


def text_reply(text: str, *, response_id: str = "resp-1", prompt_tokens: int = 120, output_tokens: int = 30) -> Reply:
    """A 200 whose model output is ``text``, the way Gemini returns JSON-mode output."""
    return _json_reply(
        200,
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": response_id,
        },
    )


class GeminiStandIn(StandIn[RecordedRequest]):
    """``with GeminiStandIn() as server:`` serves on ``server.base_url`` until the block ends."""

    protocol_version = "HTTP/1.1"

    def __init__(self, api_key: str = API_KEY_DEFAULT) -> None:
        super().__init__("gemini-standin")
        self.api_key = api_key
        self._replies: deque[Reply] = deque()

    @property
    def base_url(self) -> str:
        return self.origin

    # --- programming the replies -----------------------------------------------------------------

    def push(self, reply: Reply) -> None:
        with self._lock:
            if len(self._replies) >= REPLIES_QUEUED_MAX:
                raise OverflowError(f"more than {REPLIES_QUEUED_MAX} replies queued")
            self._replies.append(reply)

    def push_intent(self, intent: dict[str, Any], **usage: Any) -> None:
        self.push(text_reply(json.dumps(intent), **usage))

    def push_text(self, text: str, **usage: Any) -> None:
        """Model output that is not valid JSON, or JSON that does not match the schema."""
        self.push(text_reply(text, **usage))

    def push_rate_limited(self, retry_after_s: int = 1) -> None:
        self.push(
            _error_reply(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                {"Retry-After": str(retry_after_s)},
            )
        )

    def push_server_error(self) -> None:
        self.push(_error_reply(500, "INTERNAL", "An internal error has occurred."))

    # --- serving ---------------------------------------------------------------------------------

    def _answer(self, path: str, api_key: str | None, raw: bytes) -> Reply:
        match = _PATH.match(path)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._record(RecordedRequest(path, match and match["model"], api_key, body))
            if match is None:
                return _error_reply(404, "NOT_FOUND", f"no such method: {path}")
            if api_key != self.api_key:
                return _error_reply(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
            if body is None:
                return _error_reply(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            if not self._replies:
                # Not retryable, so a test that queued too few replies fails fast and says why.
                return _error_reply(400, "FAILED_PRECONDITION", "stand-in: no reply queued")
            return self._replies.popleft()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        reply = self._answer(handler.path, handler.headers.get("x-goog-api-key"), read_body(handler))
        send(handler, reply.status, reply.body, reply.headers)
