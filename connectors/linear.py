"""A small client for Linear's GraphQL API: create issues, comments and attachments, and find them again.

One method is one HTTP request, tried once: retrying is the caller's decision (``connectors.retry``).
Failures are classified for it:

- ``RetryableError``: transport errors and timeouts, 5xx, and rate limiting, which Linear reports as
  HTTP 400 (or 429) with ``errors[].extensions`` ``code: "RATELIMITED"`` and/or ``type: "ratelimited"``;
  GraphQL errors whose kind is transient (``internal error``, ``lock timeout``, ...).
- ``UnconfirmedMutation`` (retryable, ``maybe_applied``): a mutation answered without errors but
  without what it was to create, ``success: false`` or ``issue: null`` (``IssuePayload.issue`` is
  nullable). Nothing says the request was wrong (Linear reports refusals as ``errors[]``) and the
  entity may exist, so the caller looks it up before sending again.
- ``PermanentError``: authentication, permission, validation and other GraphQL errors, which arrive
  as HTTP 200 with ``errors[]`` as often as with a 4xx, and answers of an unexpected shape.

An error's kind is its ``extensions.code`` (``RATELIMITED``) or its ``extensions.type`` (the values
Linear's SDK maps: ``ratelimited``, ``authentication error``, ``forbidden``, ``invalid input``, ...):
Linear sends either or both, so both are read.

Linear meters two budgets, requests and query complexity, each with ``X-RateLimit-{Requests,
Complexity}-Remaining`` and ``-Reset`` (an epoch in milliseconds) on every response. Limits differ
by key type, so nothing is hard-coded: ``ready_in_s()`` holds the next request until every budget
the last response showed spent has reset, and a rate-limited answer waits for the later reset of the
spent budgets (and at least ``Retry-After``).

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

from connectors.retry import PermanentError, RateLimitBucket, RetryableError, header_number

LINEAR_URL_DEFAULT = "https://api.linear.app/graphql"
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 20.0
TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
# OAuth access tokens are sent as "Bearer <token>"; personal API keys are sent bare.
OAUTH_TOKEN_PREFIX = "lin_oauth_"
# Error kinds, lowercased: extensions.code ("RATELIMITED", "INTERNAL_SERVER_ERROR") or extensions.type
# (the SDK's "ratelimited", "internal error", "network error", "lock timeout"; every other type, such as
# "authentication error", "forbidden", "invalid input", is the request's own fault and permanent).
RATE_LIMITED_KINDS = frozenset({"ratelimited"})
RETRYABLE_KINDS = RATE_LIMITED_KINDS | {"internal_server_error", "internal error", "network error", "lock timeout"}
# X-RateLimit-{budget}-Remaining / -Reset: Linear meters requests and query complexity separately.
BUDGETS = ("Requests", "Complexity")
ERROR_TEXT_LENGTH_MAX = 300

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


class UnconfirmedMutation(RetryableError):
    """A mutation answered without errors but without what it was to create (``success: false``, or a
    null entity). It is not a refusal, and the entity may exist: retry, but look it up first."""

    def __init__(self, field: str, payload: Any) -> None:
        text = f"Linear {field} answered without confirming what it created: {payload!r}"
        super().__init__(text[:ERROR_TEXT_LENGTH_MAX], maybe_applied=True)


def authorization_header(api_key: str) -> str:
    return f"Bearer {api_key}" if api_key.startswith(OAUTH_TOKEN_PREFIX) else api_key


def _budget(response: httpx.Response, name: str, now_s: float) -> tuple[float | None, float | None]:
    """One budget's remaining count and seconds until its reset (the header is an epoch in ms)."""
    remaining = header_number(response.headers.get(f"X-RateLimit-{name}-Remaining"))
    reset_ms = header_number(response.headers.get(f"X-RateLimit-{name}-Reset"))
    return remaining, (reset_ms / 1000.0 - now_s if reset_ms is not None else None)


def _rate_limit_wait_s(response: httpx.Response, now_s: float) -> float | None:
    """How long a rate-limited request waits: until every budget shown spent has reset (the later of
    the two resets when both are), and at least ``Retry-After``."""
    budgets = [_budget(response, name, now_s) for name in BUDGETS]
    retry_after_s = header_number(response.headers.get("Retry-After"))  # None for an HTTP date too
    spent_resets_s = [
        reset for remaining, reset in budgets if reset is not None and remaining is not None and remaining <= 0
    ]
    if spent_resets_s:
        return max(0.0, retry_after_s or 0.0, *spent_resets_s)
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    # No budget shows spent (a query costlier than the complexity left): wait until both have refilled.
    resets_s = [reset for _, reset in budgets if reset is not None]
    return max(0.0, *resets_s) if resets_s else None


def _graphql_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = body.get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_kinds(errors: list[dict[str, Any]]) -> set[str]:
    """Every error's ``extensions.code`` and ``extensions.type``, lowercased."""
    kinds = set()
    for error in errors:
        extensions = error.get("extensions")
        if isinstance(extensions, dict):
            kinds |= {str(extensions[k]).lower() for k in ("code", "type") if extensions.get(k)}
    return kinds


def _error_text(errors: list[dict[str, Any]]) -> str:
    return "; ".join(str(e.get("message", e)) for e in errors)[:ERROR_TEXT_LENGTH_MAX]


def _issue(node: Any) -> Issue | None:
    """``node`` as an Issue, or None when it is null or lacks a field (never a TypeError)."""
    if not isinstance(node, dict):
        return None
    fields = [node.get(name) for name in ("id", "identifier", "url", "title")]
    texts = [value for value in fields if isinstance(value, str)]
    return Issue(*texts) if len(texts) == len(fields) else None


def _created(data: dict[str, Any], field: str, entity: str) -> dict[str, Any]:
    """The entity a successful mutation returns; ``UnconfirmedMutation`` when it is not there."""
    payload = data.get(field)
    created = payload.get(entity) if isinstance(payload, dict) and payload.get("success") is True else None
    if not isinstance(created, dict):
        raise UnconfirmedMutation(field, payload)
    return created


def _nodes(data: dict[str, Any], *path: str) -> list[dict[str, Any]]:
    """The ``nodes`` list at ``path`` in a query's data; ``PermanentError`` when the shape is not Linear's."""
    found: Any = data
    for key in (*path, "nodes"):
        found = found.get(key) if isinstance(found, dict) else None
    if not isinstance(found, list):
        raise PermanentError(f"Linear answered without {'.'.join(path)}.nodes: {data!r}"[:ERROR_TEXT_LENGTH_MAX])
    return [node for node in found if isinstance(node, dict)]


class LinearClient:
    def __init__(self, http: httpx.Client, api_key: str, url: str = LINEAR_URL_DEFAULT) -> None:
        self._http = http
        self._url = url
        self._headers = {"Authorization": authorization_header(api_key), "Content-Type": "application/json"}
        self._budgets = {name: RateLimitBucket() for name in BUDGETS}

    def ready_in_s(self) -> float:
        """How long to hold the next request: until the reset of every budget the last response showed spent."""
        return max(bucket.ready_in_s() for bucket in self._budgets.values())

    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST one GraphQL operation; return ``data`` or raise a classified error."""
        try:
            response = self._http.post(
                self._url, json={"query": query, "variables": variables}, headers=self._headers, timeout=TIMEOUT
            )
        except httpx.TransportError as exc:
            raise RetryableError(f"Linear unreachable: {exc!r}") from exc
        now_s = time.time()  # the resets are epochs: read the wall clock once, at the answer
        self._remember_budgets(response, now_s)
        body = self._json(response)
        errors = _graphql_errors(body)
        kinds = _error_kinds(errors)
        if response.status_code == 429 or kinds & RATE_LIMITED_KINDS:
            wait_s = _rate_limit_wait_s(response, now_s)
            raise RetryableError(f"Linear rate limited: {_error_text(errors)}", wait_s, maybe_applied=False)
        if response.status_code >= 500:
            raise RetryableError(f"Linear HTTP {response.status_code}: {_error_text(errors)}")
        if errors:
            text = f"Linear GraphQL error {sorted(kinds)}: {_error_text(errors)}"
            if kinds & RETRYABLE_KINDS:
                raise RetryableError(text)
            raise PermanentError(text)
        data = body.get("data")
        if response.status_code != 200 or not isinstance(data, dict):
            raise PermanentError(f"Linear HTTP {response.status_code}: {response.text[:ERROR_TEXT_LENGTH_MAX]}")
        return data

    def create_issue(self, team_id: str, title: str, description: str, priority: int) -> Issue:
        data = self.execute(
            ISSUE_CREATE,
            {"input": {"teamId": team_id, "title": title, "description": description, "priority": priority}},
        )
        issue = _issue(_created(data, "issueCreate", "issue"))
        if issue is None:
            raise UnconfirmedMutation("issueCreate", data.get("issueCreate"))
        return issue

    def create_comment(self, issue_id: str, body: str) -> str:
        data = self.execute(COMMENT_CREATE, {"input": {"issueId": issue_id, "body": body}})
        comment_id = _created(data, "commentCreate", "comment").get("id")
        if not isinstance(comment_id, str):
            raise UnconfirmedMutation("commentCreate", data.get("commentCreate"))
        return comment_id

    def create_attachment(self, issue_id: str, title: str, url: str) -> None:
        """Link ``url`` to the issue; Linear updates an attachment with the same URL instead of adding one."""
        data = self.execute(ATTACHMENT_CREATE, {"input": {"issueId": issue_id, "title": title, "url": url}})
        _created(data, "attachmentCreate", "attachment")

    def find_issue_by_url(self, url: str) -> Issue | None:
        nodes = _nodes(self.execute(ATTACHMENTS_FOR_URL, {"url": url}), "attachmentsForURL")
        return _issue(nodes[0].get("issue")) if nodes else None

    def find_issue_by_title(self, team_id: str, title: str) -> Issue | None:
        nodes = _nodes(self.execute(ISSUES_BY_TITLE, {"teamId": team_id, "title": title}), "issues")
        return _issue(nodes[0]) if nodes else None

    def find_comment(self, issue_id: str, text: str) -> str | None:
        """Id of a comment on the issue whose body contains ``text`` (a delivery marker), or None."""
        nodes = _nodes(self.execute(COMMENT_WITH_TEXT, {"id": issue_id, "text": text}), "issue", "comments")
        comment_id = nodes[0].get("id") if nodes else None
        return comment_id if isinstance(comment_id, str) else None

    def _remember_budgets(self, response: httpx.Response, now_s: float) -> None:
        # Each reset is turned into seconds to go here, once; the buckets count those down on the
        # monotonic clock.
        for name, bucket in self._budgets.items():
            bucket.remember(*_budget(response, name, now_s))

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
