"""Gemini through the google-genai SDK: one structured-output call that returns an ``Intent``.

This is the only place the agents do network I/O. Every failure (HTTP error after the SDK's bounded
retries, transport error, output that is not a valid intent) comes back as a ``GeminiResult`` with
``error`` set, never as an exception, so a strategy can fall back for that tick and carry on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from google import genai
from google.genai import errors, types
from pydantic import ConfigDict, ValidationError

from core.config import Settings
from schemas.intent import Intent

MODEL_DEFAULT = "gemini-2.5-flash"
TIMEOUT_S_DEFAULT = 20.0
TEMPERATURE = 0.2
RETRY_ATTEMPTS_DEFAULT = 3  # including the first request
RETRY_INITIAL_DELAY_S_DEFAULT = 1.0
RETRY_MAX_DELAY_S_DEFAULT = 8.0
RETRY_JITTER_S = 0.5
RETRY_HTTP_STATUS_CODES = [429, 500, 502, 503, 504]
ERROR_LENGTH_MAX = 300
# The SDK (3.x) uses httpx2 by default; accept httpx too in case a caller configures it.
_TRANSPORT_ERRORS = (httpx2.TransportError, httpx.TransportError)


def _drop_additional_properties(schema: dict[str, Any]) -> None:
    schema.pop("additionalProperties", None)


class _IntentSchema(Intent):
    """``Intent`` as sent in ``responseSchema``. Its ``extra="forbid"`` makes pydantic emit
    ``additionalProperties: false``, which the SDK forwards as ``additional_properties`` and the
    Gemini Developer API rejects (400 "Unknown name"). Parsing stays strict: same fields, same config."""

    model_config = ConfigDict(title="Intent", json_schema_extra=_drop_additional_properties)


@dataclass(frozen=True, slots=True)
class GeminiConfig:
    api_key: str
    model: str = MODEL_DEFAULT
    base_url: str | None = None  # tests point this at a local stand-in; production leaves it unset
    timeout_s: float = TIMEOUT_S_DEFAULT  # per HTTP attempt
    retry_attempts: int = RETRY_ATTEMPTS_DEFAULT
    retry_initial_delay_s: float = RETRY_INITIAL_DELAY_S_DEFAULT
    retry_max_delay_s: float = RETRY_MAX_DELAY_S_DEFAULT

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
    output_tokens: int | None
    latency_ms: int
    error: str | None = None  # human-readable detail, bounded
    # Short machine-readable cause for provenance and metrics: "429 RESOURCE_EXHAUSTED",
    # "invalid output", "transport ConnectError".
    error_code: str | None = None


class GeminiClient:
    def __init__(self, config: GeminiConfig) -> None:
        self.config = config
        retry = types.HttpRetryOptions(
            attempts=config.retry_attempts,
            initial_delay=config.retry_initial_delay_s,
            max_delay=config.retry_max_delay_s,
            jitter=RETRY_JITTER_S,  # the SDK's default jitter is a full second
            http_status_codes=RETRY_HTTP_STATUS_CODES,
        )
        http_options = types.HttpOptions(
            base_url=config.base_url,
            api_version="v1beta",  # 3.x defaults to v1, which lacks some structured-output fields
            timeout=int(config.timeout_s * 1000),
            retry_options=retry,
        )
        # vertexai=False: a stray GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute us.
        self._client = genai.Client(vertexai=False, api_key=config.api_key, http_options=http_options)

    @property
    def model(self) -> str:
        return self.config.model

    def close(self) -> None:
        self._client.close()

    def propose(self, prompt: str, system: str) -> GeminiResult:
        """One generateContent call (with the SDK's bounded retries); never raises for remote failures."""
        generation = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=_IntentSchema,
            system_instruction=system,
            temperature=TEMPERATURE,
        )
        started = time.monotonic()
        try:
            response = self._client.models.generate_content(model=self.config.model, contents=prompt, config=generation)
        except errors.APIError as exc:
            return _failure(started, f"{exc.code} {exc.status}", exc.message or str(exc))
        except _TRANSPORT_ERRORS as exc:
            return _failure(started, f"transport {type(exc).__name__}", str(exc))
        except errors.UnknownApiResponseError as exc:
            return _failure(started, "invalid response", str(exc))
        return _result(response, _elapsed_ms(started))


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failure(started: float, code: str, detail: str) -> GeminiResult:
    return GeminiResult(
        intent=None,
        response_id=None,
        prompt_tokens=None,
        output_tokens=None,
        latency_ms=_elapsed_ms(started),
        error=f"{code}: {detail}"[:ERROR_LENGTH_MAX],
        error_code=code,
    )


def _result(response: types.GenerateContentResponse, latency_ms: int) -> GeminiResult:
    usage = response.usage_metadata
    intent, error = _parse_intent(response)
    return GeminiResult(
        intent=intent,
        response_id=response.response_id,
        prompt_tokens=usage.prompt_token_count if usage else None,
        output_tokens=usage.candidates_token_count if usage else None,
        latency_ms=latency_ms,
        error=error,
        error_code="invalid output" if error else None,
    )


def _parse_intent(response: types.GenerateContentResponse) -> tuple[Intent | None, str | None]:
    parsed = response.parsed
    if isinstance(parsed, Intent):
        # Re-validate as the plain model so callers never see the wire-schema subclass.
        return Intent.model_validate(parsed.model_dump(exclude_unset=True)), None
    text = response.text
    if text is None:
        reason = response.candidates[0].finish_reason if response.candidates else "no candidates"
        return None, f"invalid output: no text ({reason})"
    # The SDK swallows the validation error; validating again gives the precise reason.
    try:
        return Intent.model_validate_json(text), None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors(include_url=False))
        return None, f"invalid output: {detail}"[:ERROR_LENGTH_MAX]
