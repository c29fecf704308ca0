"""A local stand-in for the Gemini ``generateContent`` REST endpoint.

The real google-genai client talks to it over HTTP (respx cannot intercept the SDK's transport), so
tests exercise the SDK's request building, response parsing, errors and retries exactly as in
production. Replies come from a queue the test fills; every request is recorded for assertions.
Bodies are v1beta's published shapes: ``usageMetadata`` with ``thoughtsTokenCount``, a 404
``NOT_FOUND`` for a model it does not serve, a 429 ``RESOURCE_EXHAUSTED`` with a ``RetryInfo``.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.base import StandIn, read_body, send

API_KEY_DEFAULT = "test-key"
REPLIES_QUEUED_MAX = 64
MODEL_VERSION_DEFAULT = "gemini-3.8-flash"
RETRY_DELAY_DEFAULT = "0.01s"  # a protobuf Duration, as RetryInfo carries it
OVERLOADED_MESSAGE = "The model is overloaded. Please try again later."
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to the Gemini API rate limits page."
)
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


def _error_reply(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    return _json_reply(code, {"error": error | ({"details": details} if details else {})})


def not_found_reply(model: str) -> Reply:
    """What generateContent answers for a model that does not exist or was shut down."""
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    return _error_reply(404, "NOT_FOUND", message)


def rate_limited_reply(model: str = MODEL_VERSION_DEFAULT, retry_delay: str | None = RETRY_DELAY_DEFAULT) -> Reply:
    """A 429 as the free tier sends it: which quota ran out, then (unless ``retry_delay`` is None) when to retry."""
    quota = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": "10",
            }
        ],
    }
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}] if retry_delay else []
    return _error_reply(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE, [quota, *retry])


def _usage(prompt_tokens: int, output_tokens: int, thoughts_tokens: int) -> dict[str, int]:
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts_tokens,
    }
    # Proto3 JSON leaves zero counts out: a reply without thinking has no thoughtsTokenCount.
    return usage | ({"thoughtsTokenCount": thoughts_tokens} if thoughts_tokens else {})


def text_reply(
    text: str,
    *,
    response_id: str = "resp-1",
    prompt_tokens: int = 120,
    output_tokens: int = 30,
    thoughts_tokens: int = 0,
    model_version: str = MODEL_VERSION_DEFAULT,
) -> Reply:
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
            "usageMetadata": _usage(prompt_tokens, output_tokens, thoughts_tokens),
            "modelVersion": model_version,
            "responseId": response_id,
        },
    )


class GeminiStandIn(StandIn[RecordedRequest]):
    """``with GeminiStandIn() as server:`` serves on ``server.base_url`` until the block ends.

    With ``models``, any other model is answered 404 as Google answers a retired one."""

    protocol_version = "HTTP/1.1"

    def __init__(self, api_key: str = API_KEY_DEFAULT, models: Collection[str] | None = None) -> None:
        super().__init__("gemini-standin")
        self.api_key = api_key
        self.models = frozenset(models) if models is not None else None
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

    def push_rate_limited(self, retry_delay: str | None = RETRY_DELAY_DEFAULT) -> None:
        self.push(rate_limited_reply(retry_delay=retry_delay))

    def push_server_error(self) -> None:
        self.push(_error_reply(500, "INTERNAL", "An internal error has occurred."))

    def push_unavailable(self, message: str = OVERLOADED_MESSAGE) -> None:
        self.push(_error_reply(503, "UNAVAILABLE", message))

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
            if self.models is not None and match["model"] not in self.models:
                return not_found_reply(match["model"])
            if not self._replies:
                # Not retryable, so a test that queued too few replies fails fast and says why.
                return _error_reply(400, "FAILED_PRECONDITION", "stand-in: no reply queued")
            return self._replies.popleft()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        reply = self._answer(handler.path, handler.headers.get("x-goog-api-key"), read_body(handler))
        send(handler, reply.status, reply.body, reply.headers)
