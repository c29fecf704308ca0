"""A local stand-in for Linear's GraphQL API: the operations the Linear sink uses, with Linear's shapes.

It keeps issues, comments and attachments in memory, answers ``issueCreate``, ``commentCreate``,
``attachmentCreate`` (same URL on the same issue updates, never duplicates), ``attachmentsForURL``,
``issues(filter: {team, title: {eq}})`` and ``issue(id) { comments(filter: {body: {contains}}) }``.
Every response carries ``X-RateLimit-Requests-Limit/-Remaining/-Reset`` (reset in epoch milliseconds).

Tests program it: ``fail(500, n)`` answers the next n requests with a 500, ``rate_limit(n, s)`` with
429 ``RATELIMITED`` and ``Retry-After: s``; ``limit_budget(n, s)`` lets n more requests through, the
last answered with 0 remaining and a reset s seconds later, and answers 429 to anything that arrives
before the reset (counted in ``violations``); ``hold(op, after_apply)`` parks the
next such request (after applying it, or before) until ``release()``, to stage a crash mid-request.
Every request is recorded with its arrival time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.base import Answer, Fault, ProgrammableStandIn, read_body

API_KEY_DEFAULT = "lin_api_standin"
TEAM_ID_DEFAULT = "team-standin"
REQUESTS_PER_HOUR = 5_000
# the first field selected in the operation names it; longer names first so "issue" does not match "issueCreate"
_OPERATIONS = ("issueCreate", "commentCreate", "attachmentCreate", "attachmentsForURL", "issues", "issue")
_FIRST_FIELD = re.compile(r"\{\s*(\w+)\s*\(")


@dataclass(frozen=True, slots=True)
class Request:
    arrived_s: float  # time.monotonic()
    operation: str
    variables: dict[str, Any]
    authorization: str | None
    status: int
    retry_after_s: float | None
    remaining: int  # X-RateLimit-Requests-Remaining in the answer


@dataclass
class StoredIssue:
    id: str
    identifier: str
    url: str
    title: str
    team_id: str
    description: str
    priority: int
    comments: list[dict[str, str]] = field(default_factory=list)

    def node(self) -> dict[str, str]:
        return {"id": self.id, "identifier": self.identifier, "url": self.url, "title": self.title}


def _operation(query: str) -> str:
    match = _FIRST_FIELD.search(query)
    name = match[1] if match else ""
    return name if name in _OPERATIONS else "unknown"


def _errors(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


class LinearStandIn(ProgrammableStandIn[Request]):
    """``with LinearStandIn() as linear:`` serves GraphQL on ``linear.url`` until the block ends."""

    def __init__(self, api_key: str = API_KEY_DEFAULT, team_id: str = TEAM_ID_DEFAULT) -> None:
        super().__init__("linear-standin")
        self.api_key = api_key
        self.team_id = team_id
        self._budget: int | None = None  # requests left before a reset; None: plenty
        self._budget_reset_after_s = 0.0
        self._budget_reset_at_s: float | None = None  # wall clock, set when the budget runs out
        self.violations = 0  # requests sent while the budget was spent
        self.issues: list[StoredIssue] = []
        self._attachments: dict[str, str] = {}  # url -> issue id

    @property
    def url(self) -> str:
        return f"{self.origin}/graphql"

    # --- programming the stand-in (and fail, rate_limit, release) -------------------------------

    def limit_budget(self, requests: int, reset_after_s: float) -> None:
        """Allow ``requests`` more, then 0 remaining until ``reset_after_s`` after the last of them."""
        with self._lock:
            self._budget = requests
            self._budget_reset_after_s = reset_after_s

    def hold(self, operation: str, after_apply: bool) -> threading.Event:
        """Park the next ``operation`` request; returns an event set once one is parked."""
        return self._hold_next(after_apply, operation)

    # --- reading what arrived -------------------------------------------------------------------

    def snapshot(self) -> tuple[list[StoredIssue], list[Request]]:
        with self._lock:
            return list(self.issues), list(self._requests)

    # --- serving ----------------------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        reset_at_s = self._budget_reset_at_s or time.time() + 3600
        remaining = self._budget if self._budget is not None else REQUESTS_PER_HOUR - len(self._requests)
        return {
            "X-RateLimit-Requests-Limit": str(REQUESTS_PER_HOUR),
            "X-RateLimit-Requests-Remaining": str(remaining),
            "X-RateLimit-Requests-Reset": str(int(reset_at_s * 1000)),
        }

    def _spend_budget(self) -> float | None:
        """Spend one request; None if allowed, else the seconds until the reset."""
        now_s = time.time()
        if self._budget_reset_at_s is not None:
            if now_s < self._budget_reset_at_s:
                return self._budget_reset_at_s - now_s
            self._budget, self._budget_reset_at_s = None, None  # the reset came: plenty again
        if self._budget is not None:
            self._budget -= 1
            if self._budget == 0:
                self._budget_reset_at_s = now_s + self._budget_reset_after_s
        return None

    def _answer(
        self, operation: str, variables: dict[str, Any], authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Under the lock: status, body and extra headers for one request."""
        if authorization != self.api_key:
            return 400, _errors("Authentication required, not authenticated", "AUTHENTICATION_ERROR"), {}
        fault = self._next_fault()
        if fault is None and (wait_s := self._spend_budget()) is not None:
            self.violations += 1
            fault = Fault(429, wait_s)
        if fault is not None and fault.status == 429:
            headers = {"Retry-After": f"{fault.retry_after_s:.3f}"} if fault.retry_after_s is not None else {}
            return 429, _errors("Rate limit exceeded", "RATELIMITED"), headers
        if fault is not None:
            return fault.status, _errors("Internal server error", "INTERNAL_SERVER_ERROR"), {}
        return 200, self._apply(operation, variables), {}

    def _apply(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return _errors(f"Cannot query field {operation!r}", "GRAPHQL_VALIDATION_FAILED")
        return handler(variables)

    def _issue(self, issue_id: str) -> StoredIssue | None:
        return next((i for i in self.issues if i.id == issue_id), None)

    def _op_issueCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        if data.get("teamId") != self.team_id or not data.get("title"):
            return _errors("Argument Validation Error", "INVALID_INPUT")
        number = len(self.issues) + 1
        issue = StoredIssue(
            id=f"issue-{number}",
            identifier=f"GRID-{number}",
            url=f"https://linear.invalid/grid/issue/GRID-{number}",
            title=data["title"],
            team_id=data["teamId"],
            description=data.get("description", ""),
            priority=int(data.get("priority", 0)),
        )
        self.issues.append(issue)
        return {"data": {"issueCreate": {"success": True, "issue": issue.node()}}}

    def _op_commentCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        issue = self._issue(data.get("issueId", ""))
        if issue is None:
            return _errors("Entity not found: Issue", "INVALID_INPUT")
        comment = {"id": f"comment-{sum(len(i.comments) for i in self.issues) + 1}", "body": data["body"]}
        issue.comments.append(comment)
        return {"data": {"commentCreate": {"success": True, "comment": {"id": comment["id"]}}}}

    def _op_attachmentCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        if self._issue(data.get("issueId", "")) is None:
            return _errors("Entity not found: Issue", "INVALID_INPUT")
        self._attachments[data["url"]] = data["issueId"]
        return {"data": {"attachmentCreate": {"success": True, "attachment": {"id": f"att-{data['url']}"}}}}

    def _op_attachmentsForURL(self, variables: dict[str, Any]) -> dict[str, Any]:
        issue = self._issue(self._attachments.get(variables["url"], ""))
        nodes = [{"issue": issue.node()}] if issue else []
        return {"data": {"attachmentsForURL": {"nodes": nodes}}}

    def _op_issues(self, variables: dict[str, Any]) -> dict[str, Any]:
        found = [i for i in self.issues if i.team_id == variables["teamId"] and i.title == variables["title"]]
        return {"data": {"issues": {"nodes": [i.node() for i in found[:1]]}}}

    def _op_issue(self, variables: dict[str, Any]) -> dict[str, Any]:
        issue = self._issue(variables["id"])
        if issue is None:
            return _errors("Entity not found: Issue", "INVALID_INPUT")
        nodes = [{"id": c["id"]} for c in issue.comments if variables["text"] in c["body"]]
        return {"data": {"issue": {"comments": {"nodes": nodes[:1]}}}}

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_s = time.monotonic()
        body = json.loads(read_body(handler) or b"{}")
        operation = _operation(body.get("query", ""))
        variables = body.get("variables") or {}
        authorization = handler.headers.get("Authorization")

        def answer() -> Answer:
            status, reply, headers = self._answer(operation, variables, authorization)
            headers |= self._rate_headers()
            retry_after = float(headers["Retry-After"]) if "Retry-After" in headers else None
            remaining = int(headers["X-RateLimit-Requests-Remaining"])
            self._record(Request(arrived_s, operation, variables, authorization, status, retry_after, remaining))
            return status, json.dumps(reply).encode(), {"Content-Type": "application/json", **headers}

        # a request parked before it was applied is lost with its client: nothing answered
        self._serve_unless_held(handler, answer, operation)
