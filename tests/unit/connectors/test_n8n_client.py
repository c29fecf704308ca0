"""The n8n client's requests as n8n 1.123 takes them, against an httpx mock transport: the owner's
session, the API key, pagination of the public API and its errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from connectors.n8n_client import API_KEY_HEADER, N8nApi, N8nError, N8nSession, Owner

BASE = "http://n8n.test:5678"
OWNER = Owner("owner@grid.example", "Grid-secret1")


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_the_owner_is_set_up_then_a_key_created_in_the_same_session() -> None:
    seen: list[tuple[str, dict[str, object], str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content), request.headers.get("cookie")))
        if request.url.path == "/rest/owner/setup":
            return httpx.Response(200, json={"data": {}}, headers={"set-cookie": "n8n-auth=session; Path=/"})
        return httpx.Response(200, json={"data": {"rawApiKey": "key-1"}})

    with client(handler) as http:
        session = N8nSession(http, BASE)
        session.set_up_owner(OWNER)
        assert session.create_api_key("gridgov", ["workflow:read"], None) == "key-1"
    assert seen == [
        (
            "/rest/owner/setup",
            {"email": OWNER.email, "password": OWNER.password, "firstName": "Grid", "lastName": "Operations"},
            None,
        ),
        ("/rest/api-keys", {"label": "gridgov", "scopes": ["workflow:read"], "expiresAt": None}, "n8n-auth=session"),
    ]


def test_lists_follow_the_cursor_with_the_key_on_every_page() -> None:
    pages = {None: {"data": [{"id": "1"}], "nextCursor": "c2"}, "c2": {"data": [{"id": "2"}], "nextCursor": None}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers[API_KEY_HEADER] == "key-1"
        assert request.url.params["workflowId"] == "w1"
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with client(handler) as http:
        assert N8nApi(http, BASE, "key-1").executions("w1") == [{"id": "1"}, {"id": "2"}]


def test_a_refusal_says_what_n8n_answered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": "request/body must NOT have additional properties"})

    with client(handler) as http, pytest.raises(N8nError, match=r"import a workflow: HTTP 400 .*additional properties"):
        N8nApi(http, BASE, "key-1").create_workflow({"name": "x", "extra": 1})


def test_every_call_has_a_timeout() -> None:
    timeouts: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"data": [], "nextCursor": None})

    with client(handler) as http:
        N8nApi(http, BASE, "key-1", timeout_s=7.0).workflows()
    assert timeouts == [{"connect": 7.0, "read": 7.0, "write": 7.0, "pool": 7.0}]
