"""A small client for Linear's GraphQL API: create issues, comments and attachments, and find them again.

One method is one HTTP request, tried once: retrying is the caller's decision (``connectors.retry``).
Failures are classified for it:

- ``RetryableError``: transport errors and timeouts, 5xx, and rate limiting, which Linear reports as
  HTTP 400 or 429 with ``errors[].extensions.code == "RATELIMITED"`` (``retry_after_s`` from
  ``Retry-After`` or else from ``X-RateLimit-Requests-Reset``, an epoch in milliseconds).
- ``PermanentError``: authentication, validation and other GraphQL errors, which arrive as HTTP 200
  with ``errors[]`` as often as with a 4xx.

Linear's hourly limits differ by key type, so nothing is hard-coded: after every response the client
remembers ``X-RateLimit-Requests-Remaining`` and ``-Reset``, and ``ready_in_s()`` tells the caller how
long to hold the next request when the budget is spent.

Finding an issue again (after a crash between "Linear created it" and "we wrote that down"): every
issue the sinks create carries an attachment whose URL is stable for what the issue is about, so
``find_issue_by_url`` (``attachmentsForURL``) answers "does it exist?"; ``find_issue_by_title``
covers a crash between ``issueCreate`` and ``attachmentCreate``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.retry import PermanentError, RateLimitBucket, RetryableError

LINEAR_URL_DEFAULT = "https://api.linear.app/graphql"
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 20.0
TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
# OAuth access tokens are sent as "Bearer <token>"; personal API keys are sent bare.
OAUTH_TOKEN_PREFIX = "lin_oauth_"
RETRYABLE_GRAPHQL_CODES = frozenset({"RATELIMITED", "INTERNAL_SERVER_ERROR"})

PRIORITY_URGENT = 1
PRIORITY_HIGH = 2

ISSUE_FIELDS = "id identifier url title"
ISSUE_CREATE = f"""mutation IssueCreate($input: IssueCreateInput!) {{
  issueCreate(input: $input) {{ success issue {{ {ISSUE_FIELDS} }} }}
}}"""
COMMENT_CREATE = """mutation CommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) { success comment { id } }
}"""
ATTACHMENT_CREATE = """mutation AttachmentCreate($input: AttachmentCreateInput!) {
  attachmentCreate(input: $input) { success attachment { id } }
}"""
ATTACHMENTS_FOR_URL = f"""query AttachmentsForUrl($url: String!) {{
  attachmentsForURL(url: $url) {{ nodes {{ issue {{ {ISSUE_FIELDS} }} }} }}
}}"""
ISSUES_BY_TITLE = f"""query IssuesByTitle($teamId: ID!, $title: String!) {{
  issues(first: 1, filter: {{ team: {{ id: {{ eq: $teamId }} }}, title: {{ eq: $title }} }}) {{
    nodes {{ {ISSUE_FIELDS} }}
  }}
}}"""
COMMENT_WITH_TEXT = """query CommentWithText($id: String!, $text: String!) {
  issue(id: $id) { comments(first: 1, filter: { body: { contains: $text } }) { nodes { id } } }
}"""


@dataclass(frozen=True)
class Issue:
    id: str
    identifier: str
    url: str
    title: str


def authorization_header(api_key: str) -> str:
    return f"Bearer {api_key}" if api_key.startswith(OAUTH_TOKEN_PREFIX) else api_key


def _retry_after_s(response: httpx.Response, now_s: float) -> float | None:
    """Seconds to wait before the next request, from ``Retry-After`` or the requests reset epoch."""
    retry_after = response.headers.get("Retry-After")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass  # an HTTP date: fall through to the reset header, which Linear always sends
    reset_ms = response.headers.get("X-RateLimit-Requests-Reset")
    if reset_ms is not None:
        return max(0.0, int(reset_ms) / 1000.0 - now_s)
    return None


def _error_codes(body: Any) -> list[str]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str((e.get("extensions") or {}).get("code", "")) for e in errors if isinstance(e, dict)]


def _error_text(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    return "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))


class LinearClient:
    def __init__(self, http: httpx.Client, api_key: str, url: str = LINEAR_URL_DEFAULT) -> None:
        self._http = http
        self._url = url
        self._headers = {"Authorization": authorization_header(api_key), "Content-Type": "application/json"}
        self._budget = RateLimitBucket()

    def ready_in_s(self) -> float:
        """How long to hold the next request: 0 unless the last response said the budget is spent."""
        return self._budget.ready_in_s()

    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST one GraphQL operation; return ``data`` or raise a classified error."""
        try:
            response = self._http.post(
                self._url, json={"query": query, "variables": variables}, headers=self._headers, timeout=TIMEOUT
            )
        except httpx.TransportError as exc:
            raise RetryableError(f"Linear unreachable: {exc!r}") from exc
        self._remember_budget(response)
        body = self._json(response)
        codes = _error_codes(body)
        if response.status_code == 429 or "RATELIMITED" in codes:
            raise RetryableError(
                f"Linear rate limited: {_error_text(body)}",
                _retry_after_s(response, time.time()),
                maybe_applied=False,
            )
        if response.status_code >= 500:
            raise RetryableError(f"Linear HTTP {response.status_code}: {_error_text(body)}")
        if codes:
            text = f"Linear GraphQL error {codes}: {_error_text(body)}"
            if RETRYABLE_GRAPHQL_CODES.intersection(codes):
                raise RetryableError(text)
            raise PermanentError(text)
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise PermanentError(f"Linear HTTP {response.status_code}: {response.text[:200]}")
        data: dict[str, Any] = body["data"]
        return data

    def create_issue(self, team_id: str, title: str, description: str, priority: int) -> Issue:
        data = self.execute(
            ISSUE_CREATE,
            {"input": {"teamId": team_id, "title": title, "description": description, "priority": priority}},
        )
        return Issue(**self._successful(data, "issueCreate")["issue"])

    def create_comment(self, issue_id: str, body: str) -> str:
        data = self.execute(COMMENT_CREATE, {"input": {"issueId": issue_id, "body": body}})
        return str(self._successful(data, "commentCreate")["comment"]["id"])

    def create_attachment(self, issue_id: str, title: str, url: str) -> None:
        """Link ``url`` to the issue; Linear updates an attachment with the same URL instead of adding one."""
        data = self.execute(ATTACHMENT_CREATE, {"input": {"issueId": issue_id, "title": title, "url": url}})
        self._successful(data, "attachmentCreate")

    def find_issue_by_url(self, url: str) -> Issue | None:
        nodes = self.execute(ATTACHMENTS_FOR_URL, {"url": url})["attachmentsForURL"]["nodes"]
        return Issue(**nodes[0]["issue"]) if nodes else None

    def find_issue_by_title(self, team_id: str, title: str) -> Issue | None:
        nodes = self.execute(ISSUES_BY_TITLE, {"teamId": team_id, "title": title})["issues"]["nodes"]
        return Issue(**nodes[0]) if nodes else None

    def find_comment(self, issue_id: str, text: str) -> str | None:
        """Id of a comment on the issue whose body contains ``text`` (a delivery marker), or None."""
        nodes = self.execute(COMMENT_WITH_TEXT, {"id": issue_id, "text": text})["issue"]["comments"]["nodes"]
        return str(nodes[0]["id"]) if nodes else None

    def _remember_budget(self, response: httpx.Response) -> None:
        # The reset is an epoch in milliseconds: the wall clock is read once, here, to turn it into
        # seconds to go; the bucket counts those down on the monotonic clock.
        reset_ms = response.headers.get("X-RateLimit-Requests-Reset")
        reset_in_s = int(reset_ms) / 1000.0 - time.time() if reset_ms is not None else None
        self._budget.remember(response.headers.get("X-RateLimit-Requests-Remaining"), reset_in_s)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _successful(data: dict[str, Any], field: str) -> dict[str, Any]:
        payload = data.get(field)
        if not isinstance(payload, dict) or not payload.get("success"):
            raise PermanentError(f"Linear {field} did not succeed: {payload!r}")
        return payload
