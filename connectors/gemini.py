"""Gemini through the google-genai SDK: one structured-output call that returns an ``Intent``.

This is the only place the agents do network I/O. Every failure (HTTP error after bounded retries,
transport error, output that is not a valid intent) comes back as a ``GeminiResult`` with ``error``
set, never as an exception, so a strategy can fall back for that tick and carry on.

This client retries, not the SDK: the SDK's backoff cannot read the ``RetryInfo.retryDelay`` a 429
carries, so it would send again before the server said it may.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from google import genai
from google.genai import errors, types
from pydantic import BaseModel, ValidationError

from core.config import Settings
from schemas.intent import Intent

log = logging.getLogger(__name__)

MODEL_DEFAULT = "gemini-3.8-flash"
MODEL_VARIABLE = "GRID_GEMINI_MODEL"
TIMEOUT_S_DEFAULT = 20.0
TEMPERATURE = 0.2
RETRY_ATTEMPTS_DEFAULT = 3  # including the first request
RETRY_INITIAL_DELAY_S_DEFAULT = 1.0
RETRY_MAX_DELAY_S_DEFAULT = 8.0
RETRY_JITTER_S = 0.5
RETRY_HTTP_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
# Longest single sleep on a 429's retryDelay inside one call. Only a (fast) 429 precedes such a sleep,
# so a call stays under 2 x 20 s + one 20 s attempt, or 20 s + 8 s backoff + 20 s + 20 s: inside the
# 90 s lockstep tick timeout. A longer hint is honoured by sending nothing until it has passed.
RATE_LIMIT_WAIT_MAX_S_DEFAULT = 20.0
# A retryDelay is believed up to this long, so a garbled one cannot switch Gemini off for the run.
RETRY_DELAY_HINT_MAX_S = 600.0
RATE_LIMITED = "429 RESOURCE_EXHAUSTED"
ERROR_LENGTH_MAX = 300
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"^(?P<seconds>\d{1,12}(?:\.\d{1,9})?)s$")  # protobuf Duration JSON: "17s", "0.5s"
# The SDK (3.x) uses httpx2 by default; accept httpx too in case a caller configures it.
_TRANSPORT_ERRORS = (httpx2.TransportError, httpx.TransportError)
# The ones worth another attempt, as the SDK's own retry predicate has them.
_TRANSIENT_ERRORS = (httpx2.ConnectError, httpx2.TimeoutException, httpx.ConnectError, httpx.TimeoutException)

# Models already reported unknown or retired: the error is logged once per process, not every tick.
_unavailable_models: set[str] = set()
_unavailable_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class GeminiConfig:
    api_key: str
    model: str = MODEL_DEFAULT
    base_url: str | None = None  # tests point this at a local stand-in; production leaves it unset
    timeout_s: float = TIMEOUT_S_DEFAULT  # per HTTP attempt
    retry_attempts: int = RETRY_ATTEMPTS_DEFAULT
    retry_initial_delay_s: float = RETRY_INITIAL_DELAY_S_DEFAULT
    retry_max_delay_s: float = RETRY_MAX_DELAY_S_DEFAULT
    rate_limit_wait_max_s: float = RATE_LIMIT_WAIT_MAX_S_DEFAULT

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiConfig:
        if settings.gemini_key is None:
            raise ValueError("set GEMINI_API_KEY (or GOOGLE_API_KEY) to use the Gemini strategy")
        return cls(
            api_key=settings.gemini_key.get_secret_value(),
            model=settings.gemini_model,
            base_url=settings.gemini_base_url,
            timeout_s=settings.gemini_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class GeminiResult:
    intent: Intent | None
    response_id: str | None
    prompt_tokens: int | None
    output_tokens: int | None  # the answer's tokens plus the thinking ones: both are billed as output
    latency_ms: int
    error: str | None = None  # human-readable detail, bounded
    # Short machine-readable cause for provenance and metrics: "429 RESOURCE_EXHAUSTED",
    # "invalid output", "transport ConnectError".
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class _Failure:
    """One attempt that got no usable response."""

    code: str
    detail: str
    retryable: bool = False
    retry_delay_s: float | None = None  # the server's RetryInfo hint


@dataclass
class _Clock:
    """Time as the client sees it; tests swap both to run a 17 s retryDelay instantly."""

    now_s: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    not_before_s: float = float("-inf")  # no request before this, per the last retryDelay


class GeminiClient:
    def __init__(
        self,
        config: GeminiConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = _Clock(now_s, sleep)
        http_options = types.HttpOptions(
            base_url=config.base_url,
            api_version="v1beta",  # 3.x defaults to v1, which lacks some structured-output fields
            timeout=int(config.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # see the module docstring
        )
        # vertexai=False: a stray GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute us.
        self._client = genai.Client(vertexai=False, api_key=config.api_key, http_options=http_options)

    @property
    def model(self) -> str:
        return self.config.model

    def close(self) -> None:
        self._client.close()

    def propose(self, prompt: str, system: str) -> GeminiResult:
        """One generateContent call with bounded retries; never raises for remote failures."""
        started_s = self._clock.now_s()
        attempt = 1
        while True:
            outcome = self._attempt(prompt, system)
            if isinstance(outcome, types.GenerateContentResponse):
                return _result(outcome, self._elapsed_ms(started_s))
            if attempt >= self.config.retry_attempts or not self._pause_before_retry(outcome, attempt):
                return _failure(outcome, self._elapsed_ms(started_s))
            attempt += 1

    def _attempt(self, prompt: str, system: str) -> types.GenerateContentResponse | _Failure:
        held_s = self._wait_for_quota()
        if held_s is not None:
            return _Failure(RATE_LIMITED, f"not sent: the last 429's retryDelay has {held_s:.1f} s to run")
        try:
            return self._client.models.generate_content(
                model=self.config.model, contents=prompt, config=_generation(system)
            )
        except errors.APIError as exc:
            return self._api_failure(exc)
        except _TRANSPORT_ERRORS as exc:
            return _Failure(f"transport {type(exc).__name__}", str(exc), isinstance(exc, _TRANSIENT_ERRORS))
        except errors.UnknownApiResponseError as exc:
            return _Failure("invalid response", str(exc))

    def _api_failure(self, exc: errors.APIError) -> _Failure:
        code, detail = f"{exc.code} {exc.status}", exc.message or str(exc)
        if _is_model_unavailable(exc, self.config.model):
            _report_unavailable_model(self.config.model, code, detail)
            return _Failure(code, detail)  # another attempt cannot bring a retired model back
        delay_s = retry_delay_s(exc.details) if exc.code == 429 else None
        if delay_s is not None:
            self._clock.not_before_s = self._clock.now_s() + min(delay_s, RETRY_DELAY_HINT_MAX_S)
        return _Failure(code, detail, exc.code in RETRY_HTTP_STATUS_CODES, delay_s)

    def _pause_before_retry(self, failure: _Failure, attempt: int) -> bool:
        """Sleeps the backoff before the next attempt; False when there should be none."""
        if not failure.retryable:
            return False
        if failure.retry_delay_s is not None:
            # The next attempt waits out the hint itself; one it may not wait for is not worth making.
            return failure.retry_delay_s <= self.config.rate_limit_wait_max_s
        self._clock.sleep(self._backoff_s(attempt))
        return True

    def _wait_for_quota(self) -> float | None:
        """Sleeps until the last retryDelay has passed, or returns the seconds left when that is longer
        than one wait may be (the call then fails fast instead of sending early)."""
        left_s = self._clock.not_before_s - self._clock.now_s()
        if left_s <= 0:
            return None
        if left_s > self.config.rate_limit_wait_max_s:
            return left_s
        self._clock.sleep(left_s)
        return None

    def _backoff_s(self, attempt: int) -> float:
        # As the SDK's own: exponential with jitter, the whole capped, so tests with tiny delays stay fast.
        base_s = self.config.retry_initial_delay_s * 2.0 ** (attempt - 1)
        return min(base_s + random.uniform(0, RETRY_JITTER_S), self.config.retry_max_delay_s)

    def _elapsed_ms(self, started_s: float) -> int:
        return int((self._clock.now_s() - started_s) * 1000)


def retry_delay_s(response_json: Any) -> float | None:
    """The ``retryDelay`` of the ``RetryInfo`` in an error body's ``error.details``, in seconds."""
    error = response_json.get("error") if isinstance(response_json, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and item.get("@type") == RETRY_INFO_TYPE:
            match = _DURATION.match(str(item.get("retryDelay", "")))
            return float(match["seconds"]) if match else None
    return None


def _is_model_unavailable(exc: errors.APIError, model: str) -> bool:
    # generateContent answers 404 for an unknown or shut-down model; a withdrawn one may answer 503
    # naming itself, unlike an overloaded one ("The model is overloaded"), which is worth retrying.
    return exc.code == 404 or (exc.code == 503 and model.removeprefix("models/") in (exc.message or ""))


def _report_unavailable_model(model: str, code: str, detail: str) -> None:
    with _unavailable_lock:
        if model in _unavailable_models:
            return
        _unavailable_models.add(model)
    log.error(
        "Gemini model %r is unknown or retired (%s: %s); set %s to a current model from Google's model "
        "list. Falling back to the heuristic until then.",
        model,
        code,
        detail[:ERROR_LENGTH_MAX],
        MODEL_VARIABLE,
        extra={"gemini_model": model, "gemini_problem": code},
    )


def _generation(system: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=response_schema(Intent),
        system_instruction=system,
        temperature=TEMPERATURE,
    )


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as sent in ``responseSchema``, a fresh dict (the SDK edits it in place).

    Without the classes' docstrings: pydantic turns them into ``description``, and those are notes
    for developers, not instructions for the model (fields' own descriptions stay). Without
    ``additionalProperties``: ``extra="forbid"`` emits it, the SDK forwards it as
    ``additional_properties`` and the Gemini Developer API rejects that (400 "Unknown name").
    Parsing stays strict: the answer is validated against ``model`` itself.
    """
    schema = model.model_json_schema()
    for class_schema in [schema, *schema.get("$defs", {}).values()]:
        class_schema.pop("description", None)
        class_schema.pop("additionalProperties", None)
    return schema


def _failure(failure: _Failure, latency_ms: int) -> GeminiResult:
    return GeminiResult(
        intent=None,
        response_id=None,
        prompt_tokens=None,
        output_tokens=None,
        latency_ms=latency_ms,
        error=f"{failure.code}: {failure.detail}"[:ERROR_LENGTH_MAX],
        error_code=failure.code,
    )


def _result(response: types.GenerateContentResponse, latency_ms: int) -> GeminiResult:
    usage = response.usage_metadata
    intent, error = _parse_intent(response)
    return GeminiResult(
        intent=intent,
        response_id=response.response_id,
        prompt_tokens=usage.prompt_token_count if usage else None,
        output_tokens=_output_tokens(usage),
        latency_ms=latency_ms,
        error=error,
        error_code="invalid output" if error else None,
    )


def _output_tokens(usage: types.GenerateContentResponseUsageMetadata | None) -> int | None:
    # Thinking models (all of the 3.x Flash line) spend thoughtsTokenCount on top of the answer's
    # candidatesTokenCount, and Google bills both as output: leaving them out under-reports the cost.
    if usage is None or (usage.candidates_token_count is None and usage.thoughts_token_count is None):
        return None
    return (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)


def _parse_intent(response: types.GenerateContentResponse) -> tuple[Intent | None, str | None]:
    text = response.text
    if text is None:
        reason = response.candidates[0].finish_reason if response.candidates else "no candidates"
        return None, f"invalid output: no text ({reason})"
    # The schema is sent as a dict, so the SDK only json-loads the text; validating here is the check.
    try:
        return Intent.model_validate_json(text), None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors(include_url=False))
        return None, f"invalid output: {detail}"[:ERROR_LENGTH_MAX]
