"""n8n's HTTP APIs as the provisioning and the tests use them: the owner's REST session, the public API.

Two doors, as n8n 1.123 has them:

- ``/rest/…`` is the editor's own API, behind the ``n8n-auth`` cookie of a logged-in user. Only it can
  create the owner (``POST /rest/owner/setup``, once, on an instance without one) and an API key
  (``POST /rest/api-keys`` with ``label``, ``scopes`` and ``expiresAt``, seconds since the epoch or
  null). The key's value is in that one answer (``rawApiKey``) and never again.
- ``/api/v1/…`` is the public API, behind ``X-N8N-API-KEY``: workflows, their activation, credentials
  and executions. Everything after the first setup goes through it.

Each call has an explicit timeout; the ``httpx.Client`` is injected, so a test can point it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_S = 30.0
API_KEY_HEADER = "X-N8N-API-KEY"
PAGE_LIMIT = 250  # the public API's largest page


class N8nError(RuntimeError):
    """n8n answered a call with an error status; the message carries its own explanation."""


def _checked(response: httpx.Response, what: str) -> Any:
    if response.is_error:
        raise N8nError(f"n8n refused to {what}: HTTP {response.status_code} {response.text[:500]}")
    return response.json() if response.content else None


@dataclass(frozen=True)
class Owner:
    email: str
    password: str
    first_name: str = "Grid"
    last_name: str = "Operations"


class N8nSession:
    """The owner logged in to ``/rest``: only for what the public API cannot do."""

    def __init__(self, http: httpx.Client, base_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self._http, self._base, self._timeout_s = http, base_url.rstrip("/"), timeout_s

    def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        response = self._http.post(f"{self._base}/rest{path}", json=body, timeout=self._timeout_s)
        return _checked(response, what).get("data")

    def owner_exists(self) -> bool:
        """True once an owner was set up (``/rest/settings`` says so to anyone)."""
        response = self._http.get(f"{self._base}/rest/settings", timeout=self._timeout_s)
        settings = _checked(response, "show its settings")["data"]
        return not settings["userManagement"]["showSetupOnFirstLoad"]

    def set_up_owner(self, owner: Owner) -> None:
        body = {
            "email": owner.email,
            "password": owner.password,
            "firstName": owner.first_name,
            "lastName": owner.last_name,
        }
        self._post("/owner/setup", body, "set up its owner")  # answers with the session cookie

    def log_in(self, owner: Owner) -> None:
        # 1.123 names the field emailOrLdapLoginId; the cookie it sets is kept by the client
        self._post("/login", {"emailOrLdapLoginId": owner.email, "password": owner.password}, "log the owner in")

    def create_api_key(self, label: str, scopes: list[str], expires_at_s: int | None) -> str:
        """A new API key with ``scopes``; its value, which n8n shows this once."""
        data = self._post("/api-keys", {"label": label, "scopes": scopes, "expiresAt": expires_at_s}, "create a key")
        return str(data["rawApiKey"])


class N8nApi:
    """The public API (``/api/v1``) with one API key."""

    def __init__(self, http: httpx.Client, base_url: str, api_key: str, timeout_s: float = TIMEOUT_S) -> None:
        self._http, self._base, self._timeout_s = http, f"{base_url.rstrip('/')}/api/v1", timeout_s
        self._headers = {API_KEY_HEADER: api_key}

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = self._http.request(
            method, f"{self._base}{path}", headers=self._headers, timeout=self._timeout_s, **kwargs
        )
        return _checked(response, what)

    def _pages(self, path: str, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """Every item of a paginated list (``data`` plus ``nextCursor``)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            paging = {"limit": PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", path, what, params={**params, **paging})
            items += page["data"]
            cursor = page.get("nextCursor")
            if not cursor:
                return items

    def workflows(self) -> list[dict[str, Any]]:
        return self._pages("/workflows", {}, "list workflows")

    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/workflows", "import a workflow", json=workflow)
        return result

    def update_workflow(self, workflow_id: str, workflow: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/workflows/{workflow_id}", "update a workflow", json=workflow)
        return result

    def activate(self, workflow_id: str) -> None:
        self._call("POST", f"/workflows/{workflow_id}/activate", f"activate workflow {workflow_id}")

    def deactivate(self, workflow_id: str) -> None:
        self._call("POST", f"/workflows/{workflow_id}/deactivate", f"deactivate workflow {workflow_id}")

    def create_credential(self, name: str, type_: str, data: dict[str, Any]) -> str:
        body = {"name": name, "type": type_, "data": data}
        return str(self._call("POST", "/credentials", f"create the credential {name!r}", json=body)["id"])

    def delete_credential(self, credential_id: str) -> None:
        self._call("DELETE", f"/credentials/{credential_id}", f"delete credential {credential_id}")

    def executions(self, workflow_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Executions, newest first; ``status``: success, error, waiting, running, canceled."""
        params = {k: v for k, v in (("workflowId", workflow_id), ("status", status)) if v is not None}
        return self._pages("/executions", params, "list executions")

    def execution(self, execution_id: str) -> dict[str, Any]:
        """One execution with its data: each node's input and output, and the error if it failed."""
        result: dict[str, Any] = self._call(
            "GET", f"/executions/{execution_id}", "show an execution", params={"includeData": "true"}
        )
        return result
