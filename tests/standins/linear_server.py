"""A local stand-in for Linear's GraphQL API: the operations the Linear sink uses, with Linear's shapes.

It keeps issues, comments and attachments in memory, answers ``issueCreate``, ``commentCreate``,
``attachmentCreate`` (same URL on the same issue updates, never duplicates), ``attachmentsForURL``,
``issues(filter: {team, title: {eq}})`` and ``issue(id) { comments(filter: {body: {contains}}) }``.
GraphQL errors carry ``extensions.code`` and ``extensions.type`` as Linear sends them.

Linear meters two budgets, requests and query complexity; every response carries
``X-RateLimit-Requests-Limit/-Remaining/-Reset``, ``X-Complexity`` (what this request cost) and
``X-RateLimit-Complexity-Limit/-Remaining/-Reset`` (resets in epoch milliseconds). A rate limit is
answered as Linear does: HTTP 400 with ``{"errors": [{"message": "Rate limit exceeded", "extensions":
{"code": "RATELIMITED", "type": "ratelimited"}}]}`` and those headers.

Tests program it: ``fail(500, n)`` answers the next n requests with a 500; ``rate_limit(n, s)`` rate-limits
them with ``Retry-After: s`` (``status=429`` for the variant Linear also uses); ``fail_graphql(n, ...)``
answers chosen GraphQL errors; ``limit_budget(n, s)`` and ``limit_complexity(n, s)`` let n more requests
through the requests or complexity budget, the last answered with 0 remaining and a reset s seconds
later, and rate-limit anything that arrives before the reset (counted in ``violations``; those answers
carry the budget headers but no ``Retry-After``: the headers say when); ``answer_without_issue(n,
created)`` answers the next n ``issueCreate`` with ``issue: null`` (``success: true`` after creating it,
``success: false`` without); ``hold(op, after_apply)`` parks the next such request (after applying it,
or before) until ``release()``, to stage a crash mid-request. Every request is recorded with its
arrival time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.base import Answer, Fault, ProgrammableStandIn, read_body

API_KEY_DEFAULT = "lin_api_standin"
TEAM_ID_DEFAULT = "team-standin"
REQUESTS_PER_HOUR = 5_000
COMPLEXITY_PER_HOUR = 250_000
COMPLEXITY_PER_REQUEST = 12  # every operation here selects a handful of fields of one or two objects
HOUR_S = 3600.0
RATE_LIMIT_STATUS = 400  # what Linear answers a rate-limited request with
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
    complexity_remaining: int = COMPLEXITY_PER_HOUR  # X-RateLimit-Complexity-Remaining in the answer
    rate_limited: bool = False


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


@dataclass
class _Budget:
    """One of Linear's budgets as a test programs it; ``cost`` is what one request spends."""

    name: str  # as in X-RateLimit-{name}-Remaining
    limit: int
    cost: int
    spent: int = 0
    left: int | None = None  # programmed amount left before a reset; None: plenty
    reset_after_s: float = 0.0
    reset_at_s: float | None = None  # wall clock, set when it runs out

    def program(self, requests: int, reset_after_s: float, now_s: float) -> None:
        self.left, self.reset_after_s = requests * self.cost, reset_after_s
        self.reset_at_s = now_s + reset_after_s if requests == 0 else None

    def blocked_for_s(self, now_s: float) -> float | None:
        """Seconds until the reset while the budget is spent, else None."""
        if self.reset_at_s is None:
            return None
        if now_s < self.reset_at_s:
            return self.reset_at_s - now_s
        self.left, self.reset_at_s = None, None  # the reset came: plenty again
        return None

    def spend(self, now_s: float) -> None:
        self.spent += self.cost
        if self.left is not None:
            self.left = max(0, self.left - self.cost)
            if self.left == 0:
                self.reset_at_s = now_s + self.reset_after_s

    def remaining(self) -> int:
        return self.left if self.left is not None else max(0, self.limit - self.spent)

    def headers(self, now_s: float) -> dict[str, str]:
        reset_at_s = self.reset_at_s if self.reset_at_s is not None else now_s + HOUR_S
        return {
            f"X-RateLimit-{self.name}-Limit": str(self.limit),
            f"X-RateLimit-{self.name}-Remaining": str(self.remaining()),
            f"X-RateLimit-{self.name}-Reset": str(int(reset_at_s * 1000)),
        }


def _operation(query: str) -> str:
    match = _FIRST_FIELD.search(query)
    name = match[1] if match else ""
    return name if name in _OPERATIONS else "unknown"


def graphql_errors(message: str, code: str | None, type_: str | None) -> dict[str, Any]:
    """Linear's error body; a real one carries both ``code`` and ``type``, a test may leave either out."""
    extensions = {k: v for k, v in (("code", code), ("type", type_)) if v is not None}
    return {"errors": [{"message": message, "extensions": extensions}]}


RATE_LIMITED_BODY = graphql_errors("Rate limit exceeded", "RATELIMITED", "ratelimited")


class LinearStandIn(ProgrammableStandIn[Request]):
    """``with LinearStandIn() as linear:`` serves GraphQL on ``linear.url`` until the block ends."""

    def __init__(self, api_key: str = API_KEY_DEFAULT, team_id: str = TEAM_ID_DEFAULT) -> None:
        super().__init__("linear-standin")
        self.api_key = api_key
        self.team_id = team_id
        self._requests_budget = _Budget("Requests", REQUESTS_PER_HOUR, 1)
        self._complexity_budget = _Budget("Complexity", COMPLEXITY_PER_HOUR, COMPLEXITY_PER_REQUEST)
        self.violations = 0  # requests sent while a budget was spent
        self.issues: list[StoredIssue] = []
        self._attachments: dict[str, str] = {}  # url -> issue id
        self._without_issue: deque[bool] = deque()  # per coming issueCreate: created before answering null?

    @property
    def url(self) -> str:
        return f"{self.origin}/graphql"

    # --- programming the stand-in (and fail, release) --------------------------------------------

    def rate_limit(self, count: int, retry_after_s: float, status: int = RATE_LIMIT_STATUS) -> None:
        """Rate-limit the next ``count`` requests with ``Retry-After: retry_after_s``."""
        self._queue(Fault(status, retry_after_s, rate_limited=True), count)

    def fail_graphql(
        self, count: int, message: str, code: str | None = None, type_: str | None = None, status: int = 200
    ) -> None:
        """Answer the next ``count`` requests with one GraphQL error of this ``code`` and/or ``type``."""
        self._queue(Fault(status, body=graphql_errors(message, code, type_)), count)

    def limit_budget(self, requests: int, reset_after_s: float) -> None:
        """Allow ``requests`` more, then 0 remaining until ``reset_after_s`` after the last of them."""
        with self._lock:
            self._requests_budget.program(requests, reset_after_s, time.time())

    def limit_complexity(self, requests: int, reset_after_s: float) -> None:
        """Allow ``requests`` more requests' complexity, then 0 points remaining until ``reset_after_s``
        after the last of them; with 0, the complexity budget is spent from now on for that long."""
        with self._lock:
            self._complexity_budget.program(requests, reset_after_s, time.time())

    def answer_without_issue(self, count: int, created: bool) -> None:
        """Answer the next ``count`` issueCreate with ``issue: null``: ``success: true`` after creating
        the issue (``created``), or ``success: false`` without creating anything."""
        with self._lock:
            self._without_issue.extend(created for _ in range(count))

    def hold(self, operation: str, after_apply: bool) -> threading.Event:
        """Park the next ``operation`` request; returns an event set once one is parked."""
        return self._hold_next(after_apply, operation)

    # --- reading what arrived -------------------------------------------------------------------

    def snapshot(self) -> tuple[list[StoredIssue], list[Request]]:
        with self._lock:
            return list(self.issues), list(self._requests)

    # --- serving ----------------------------------------------------------------------------------

    def _rate_headers(self, now_s: float) -> dict[str, str]:
        headers = {"X-Complexity": str(COMPLEXITY_PER_REQUEST)}
        for budget in (self._requests_budget, self._complexity_budget):
            headers |= budget.headers(now_s)
        return headers

    def _spend_budgets(self) -> bool:
        """Spend one request from both budgets; False (and nothing spent) while either is spent."""
        now_s = time.time()
        budgets = (self._requests_budget, self._complexity_budget)
        if any([b.blocked_for_s(now_s) is not None for b in budgets]):  # a list: every reset is checked
            return False
        for budget in budgets:
            budget.spend(now_s)
        return True

    def _answer(
        self, operation: str, variables: dict[str, Any], authorization: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Under the lock: status, body and extra headers for one request."""
        if authorization != self.api_key:
            message = "Authentication required, not authenticated"
            return 400, graphql_errors(message, "AUTHENTICATION_ERROR", "authentication error"), {}
        fault = self._next_fault()
        if fault is None and not self._spend_budgets():
            self.violations += 1
            return RATE_LIMIT_STATUS, RATE_LIMITED_BODY, {}
        if fault is not None and (fault.rate_limited or fault.status == 429):
            headers = {"Retry-After": f"{fault.retry_after_s:.3f}"} if fault.retry_after_s is not None else {}
            return fault.status, RATE_LIMITED_BODY, headers
        if fault is not None and fault.body is not None:
            return fault.status, fault.body, {}
        if fault is not None:
            return fault.status, graphql_errors("Internal server error", "INTERNAL_SERVER_ERROR", "internal error"), {}
        return 200, self._apply(operation, variables), {}

    def _apply(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return graphql_errors(f"Cannot query field {operation!r}", "GRAPHQL_VALIDATION_FAILED", "graphql error")
        result: dict[str, Any] = handler(variables)
        return result

    def _issue(self, issue_id: str) -> StoredIssue | None:
        return next((i for i in self.issues if i.id == issue_id), None)

    def _create_issue(self, data: dict[str, Any]) -> StoredIssue:
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
        return issue

    def _op_issueCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        if data.get("teamId") != self.team_id or not data.get("title"):
            return graphql_errors("Argument Validation Error", "INVALID_INPUT", "invalid input")
        if self._without_issue:
            created = self._without_issue.popleft()
            if created:
                self._create_issue(data)
            return {"data": {"issueCreate": {"success": created, "issue": None}}}
        return {"data": {"issueCreate": {"success": True, "issue": self._create_issue(data).node()}}}

    def _op_commentCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        issue = self._issue(data.get("issueId", ""))
        if issue is None:
            return graphql_errors("Entity not found: Issue", "INVALID_INPUT", "invalid input")
        comment = {"id": f"comment-{sum(len(i.comments) for i in self.issues) + 1}", "body": data["body"]}
        issue.comments.append(comment)
        return {"data": {"commentCreate": {"success": True, "comment": {"id": comment["id"]}}}}

    def _op_attachmentCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables["input"]
        if self._issue(data.get("issueId", "")) is None:
            return graphql_errors("Entity not found: Issue", "INVALID_INPUT", "invalid input")
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
            return graphql_errors("Entity not found: Issue", "INVALID_INPUT", "invalid input")
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
            headers |= self._rate_headers(time.time())
            retry_after = float(headers["Retry-After"]) if "Retry-After" in headers else None
            remaining = int(headers["X-RateLimit-Requests-Remaining"])
            request = Request(
                arrived_s,
                operation,
                variables,
                authorization,
                status,
                retry_after,
                remaining,
                int(headers["X-RateLimit-Complexity-Remaining"]),
                rate_limited=reply is RATE_LIMITED_BODY,
            )
            self._record(request)
            return status, json.dumps(reply).encode(), {"Content-Type": "application/json", **headers}

        # a request parked before it was applied is lost with its client: nothing answered
        self._serve_unless_held(handler, answer, operation)
