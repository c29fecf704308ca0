"""Discord webhook client and the payload limits Discord enforces.

``DiscordWebhook.post`` sends one message with ``?wait=true``, so a 200 carrying the created message
is the confirmation the sink waits for before it acknowledges anything (without ``wait`` Discord
answers 204 before the message exists). One call is one request; retrying is the caller's job
(``connectors.retry``), with failures classified as ``RetryableError`` (transport, 5xx, 429 with the
server's ``retry_after``) or ``PermanentError`` (400 for a payload Discord rejects, 401/403/404 for a
webhook that is gone; repeating those risks an IP ban and never helps). A 400's nested ``errors``
object (``{"embeds": {"0": {"description": {"_errors": [...]}}}}``) is flattened into the message,
``embeds.0.description: Must be 4096 or fewer in length. (BASE_TYPE_MAX_LENGTH)``.

Discord publishes its bucket state on every response (``X-RateLimit-Remaining``,
``X-RateLimit-Reset-After`` in seconds); ``ready_in_s()`` turns "0 remaining, reset in 1.2 s" into a
wait before the next request, so the sink does not spend a request to learn it is limited. A 429
whose body says ``"global": true`` is the app's global limit: it holds every webhook client that
shares the ``GlobalRateLimit`` (by default, all of the process), not only the bucket that drew it.

Every request carries ``User-Agent: DiscordBot (URL, VERSION)`` as Discord's API reference asks of
HTTP clients, with the installed package's URL and version.

``fit_payload`` clamps any payload to Discord's limits (content 2,000 characters; 10 embeds; title
256, description 4,096, 25 fields of 256/1,024, footer 2,048; 6,000 characters across all embeds),
truncating with an ellipsis, and dropping trailing fields and embeds only when the total demands it.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.retry import PermanentError, RateLimitBucket, RetryableError, header_number

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

# The installed distribution whose metadata names the User-Agent's URL and version.
DISTRIBUTION = "grid-governance-engine"
ERROR_TEXT_LENGTH_MAX = 1000


@functools.cache
def user_agent() -> str:
    """``DiscordBot (URL, VERSION)``, the form Discord asks of every HTTP client: the package's first
    ``Project-URL`` (or ``Home-page``, else its name, while the package declares no URL) and version."""
    try:
        meta = importlib.metadata.metadata(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return f"DiscordBot ({DISTRIBUTION}, unknown)"
    project_urls = [entry.split(",", 1)[-1].strip() for entry in meta.get_all("Project-URL") or []]
    urls = [*project_urls, *(meta.get_all("Home-page") or []), DISTRIBUTION]
    return f"DiscordBot ({urls[0]}, {meta['Version']})"


class GlobalRateLimit:
    """Discord's global rate limit as the last global 429 stated it. It applies to every request the
    app makes, so every webhook client shares one (threads of the sink runner included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until_s = 0.0  # time.monotonic()

    def hold(self, wait_s: float) -> None:
        with self._lock:
            self._until_s = max(self._until_s, time.monotonic() + wait_s)

    def ready_in_s(self) -> float:
        with self._lock:
            return max(0.0, self._until_s - time.monotonic())


GLOBAL_RATE_LIMIT = GlobalRateLimit()


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


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: Any) -> float | None:
    """A JSON number of seconds (``retry_after`` is fractional), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return header_number(str(value))


def form_errors(errors: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Discord's nested ``errors`` object as ``path: message (CODE)`` lines, e.g.
    ``embeds.0.description: Must be 4096 or fewer in length. (BASE_TYPE_MAX_LENGTH)``."""
    if not isinstance(errors, dict):
        return []
    lines = []
    for key, value in errors.items():
        if key != "_errors":
            lines += form_errors(value, (*path, str(key)))
        elif isinstance(value, list):
            where = ".".join(path) or "body"
            lines += [f"{where}: {e.get('message')} ({e.get('code')})" for e in value if isinstance(e, dict)]
    return lines


def error_text(response: httpx.Response) -> str:
    """A refusal as people read it: Discord's message and code, then each field error."""
    body = _json_object(response)
    if "message" not in body:
        return response.text[:ERROR_TEXT_LENGTH_MAX]
    summary = f"{body['message']} (code {body.get('code')})"
    return "; ".join([summary, *form_errors(body.get("errors"))])[:ERROR_TEXT_LENGTH_MAX]


class DiscordWebhook:
    def __init__(self, http: httpx.Client, webhook_url: str, global_limit: GlobalRateLimit = GLOBAL_RATE_LIMIT) -> None:
        self._http = http
        self._url = execute_url(webhook_url)
        self._bucket = RateLimitBucket()
        self._global_limit = global_limit
        self._headers = {"User-Agent": user_agent()}

    def ready_in_s(self) -> float:
        """How long to hold the next request: until this bucket refills, and any global limit is over."""
        return max(self._bucket.ready_in_s(), self._global_limit.ready_in_s())

    def post(self, payload: dict[str, Any]) -> str:
        """Send one message and return its id once Discord has created it."""
        try:
            response = self._http.post(
                self._url, params={"wait": "true"}, json=payload, headers=self._headers, timeout=TIMEOUT
            )
        except httpx.TransportError as exc:
            raise RetryableError(f"Discord unreachable: {exc!r}") from exc
        self._remember_bucket(response)
        if response.status_code == 429:
            raise self._rate_limited(response)
        if response.status_code >= 500:
            raise RetryableError(f"Discord HTTP {response.status_code}")
        if response.status_code != 200:
            raise PermanentError(f"Discord HTTP {response.status_code}: {error_text(response)}")
        message_id = _json_object(response).get("id")
        if not isinstance(message_id, str):  # a 200 is a created message: anything else is not Discord
            raise PermanentError(f"Discord HTTP 200 without a message id: {response.text[:ERROR_TEXT_LENGTH_MAX]}")
        return message_id

    def _remember_bucket(self, response: httpx.Response) -> None:
        reset_in_s = header_number(response.headers.get("X-RateLimit-Reset-After"))  # seconds to go, fractional
        self._bucket.remember(header_number(response.headers.get("X-RateLimit-Remaining")), reset_in_s)

    def _rate_limited(self, response: httpx.Response) -> RetryableError:
        """A 429's error, after a global one has held every client sharing the global limit."""
        body = _json_object(response)
        # the body's retry_after is fractional; the header is whole seconds, rounded up
        retry_after_s = _seconds(body.get("retry_after"))
        if retry_after_s is None:
            retry_after_s = header_number(response.headers.get("Retry-After"))
        is_global = body.get("global") is True or response.headers.get("X-RateLimit-Global") == "true"
        if is_global and retry_after_s is not None:
            self._global_limit.hold(retry_after_s)
        scope = "global" if is_global else "bucket"
        text = f"Discord rate limited ({scope}): {body.get('message', response.text[:ERROR_TEXT_LENGTH_MAX])}"
        return RetryableError(text, retry_after_s, maybe_applied=False)
