"""n8n, the incident workflows' engine: installed with npm, run on localhost, provisioned through its APIs.

Layout under ``<home>/n8n``: ``app-<version>/`` (``npm install --prefix``, kept once complete),
``data/`` (``N8N_USER_FOLDER``: its SQLite database and settings), ``n8n.log``, ``n8n.pid`` and
``provisioned.json`` (the ids of the credentials it made there). Secrets live in
``GRID_HOME/credentials`` (0600): the owner's password, the API key, the encryption key of n8n's
credential store.

n8n gets a small environment of its own, not the grid's: its workflows can read every variable of
it (``$env``), so it holds the endpoints they call and nothing that would let them act on the grid.
On Kafka it is the ``n8n`` principal, read-only on alerts, incidents and rejections.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connectors.kafka_admin import ensure_topics
from connectors.n8n_client import N8nApi, N8nError, N8nSession, Owner
from core.config import REPO_ROOT, Settings, revealed
from core.credentials import credentials_dir, generated_secret, write_private
from core.process import (
    InfraError,
    cmdline,
    log_tail,
    pid_alive,
    poll_until,
    port_open,
    read_pid,
    spawn_detached,
    terminate,
)

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
WORKFLOWS_DIR = REPO_ROOT / "connectors" / "n8n"
INSTALL_TIMEOUT_S = 1200
GRACEFUL_SHUTDOWN_S = 10.0
STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 20.0
HTTP_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0
COMPLETE_MARKER = ".complete"
XLSX_FROM_REGISTRY = "0.18.5"
API_KEY_LABEL = "gridgov"
# what `gridgov n8n up|status` and the tests do through the public API, and nothing more
API_KEY_SCOPES = [
    "workflow:create", "workflow:read", "workflow:update", "workflow:list", "workflow:activate",
    "workflow:deactivate", "credential:create", "credential:delete", "execution:read", "execution:list",
]  # fmt: skip
KAFKA_CREDENTIAL = "Grid Kafka (n8n principal)"
LINEAR_CREDENTIAL = "Linear API key"
# which endpoints each shipped workflow calls: one whose endpoints are not configured stays inactive
NEEDS = {
    "critical-alerts": ("discord", "linear"),
    "conflict-digest": ("linear",),
    "breaker-checkpoint": ("discord",),
}


def root(s: Settings) -> Path:
    return s.home / "n8n"


def app_dir(s: Settings) -> Path:
    return root(s) / f"app-{s.n8n_version}"


def data_dir(s: Settings) -> Path:
    return root(s) / "data"


def log_path(s: Settings) -> Path:
    return root(s) / "n8n.log"


def pid_path(s: Settings) -> Path:
    return root(s) / "n8n.pid"


def base_url(s: Settings) -> str:
    return s.n8n_url


def entry_point(s: Settings) -> Path:
    return app_dir(s) / "node_modules" / "n8n" / "bin" / "n8n"


def app_manifest(version: str) -> dict[str, Any]:
    """The package.json n8n is installed from: n8n pinned exactly, and one dependency redirected.

    n8n-nodes-base asks for SheetJS's ``xlsx`` as a tarball from SheetJS's own server, which is not a
    package registry and not reachable from here: ``overrides`` takes the npm registry's last release
    of it, 0.18.5, for the spreadsheet nodes (no workflow of ours uses them).
    """
    return {"private": True, "dependencies": {"n8n": version}, "overrides": {"xlsx": XLSX_FROM_REGISTRY}}


def install(s: Settings) -> float:
    """``npm install`` n8n into ``app-<version>``; return seconds (0 when it is there already)."""
    target = app_dir(s)
    if (target / COMPLETE_MARKER).exists():
        return 0.0
    npm = shutil.which("npm")
    if npm is None:
        raise InfraError("npm (Node.js 20) is needed to install n8n; run scripts/setup.sh")
    start = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    for leftover in (partial, target):  # an interrupted install has no marker: start over
        shutil.rmtree(leftover, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "package.json").write_text(json.dumps(app_manifest(s.n8n_version), indent=2) + "\n")
    cmd = [npm, "install", "--prefix", str(partial), "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
    logger.info("installing n8n %s with npm into %s", s.n8n_version, target)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not (partial / "node_modules" / "n8n" / "bin" / "n8n").exists():
        raise InfraError(f"npm could not install n8n {s.n8n_version}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    partial.rename(target)
    elapsed_s = time.monotonic() - start
    (target / COMPLETE_MARKER).write_text(f"installed in {elapsed_s:.0f} s\n")
    logger.info("installed n8n %s in %.1f s", s.n8n_version, elapsed_s)
    return elapsed_s


def installed_version(s: Settings) -> str | None:
    """The version npm installed (what runs: the pid's command line names this entry point)."""
    manifest = entry_point(s).parent.parent / "package.json"
    return str(json.loads(manifest.read_text())["version"]) if manifest.exists() else None


def encryption_key(s: Settings) -> str:
    """The key n8n encrypts its stored credentials with: ours, so a lost ``data/`` config cannot orphan them."""
    return generated_secret(s.home, "n8n-encryption-key")


def owner(s: Settings) -> Owner:
    path = credentials_dir(s.home) / "n8n-owner"
    # n8n wants a digit and an upper-case letter in a password; the hex gives the rest
    write_private(path, f"Grid-{secrets.token_hex(24)}")
    return Owner(s.n8n_owner_email, path.read_text().strip())


def workflow_env(s: Settings) -> dict[str, str]:
    """What the workflows read with ``$env``: where the topics are, whom they call, where the console is."""
    return {
        "GRID_TOPIC_PREFIX": s.topic_prefix,
        "GRID_DASHBOARD_URL": s.dashboard_url,
        "GRID_LINEAR_URL": s.linear_url,
        "LINEAR_TEAM_ID": s.linear_team_id or "",
        "DISCORD_WEBHOOK_URL": revealed(s.discord_webhook_url) or "",
        "GRID_N8N_DIGEST_CRON": s.n8n_digest_cron,
    }


def runner_broker_port(s: Settings) -> int:
    """Where n8n's task runners connect to it: the port after its own, so two instances never share one."""
    return s.n8n_port + 1


def n8n_env(s: Settings, node: Path) -> dict[str, str]:
    url = base_url(s)
    return {
        "PATH": os.pathsep.join((str(node.parent), "/usr/bin", "/bin")),  # node for its task runners, and a shell
        "HOME": str(data_dir(s)),
        "N8N_USER_FOLDER": str(data_dir(s)),
        "N8N_ENCRYPTION_KEY": encryption_key(s),
        "N8N_PORT": str(s.n8n_port),
        "N8N_LISTEN_ADDRESS": HOST,
        "N8N_HOST": HOST,
        "N8N_PROTOCOL": "http",
        "N8N_EDITOR_BASE_URL": url,
        "WEBHOOK_URL": f"{url}/",  # the form links a waiting checkpoint hands out
        "N8N_SECURE_COOKIE": "false",  # plain http on localhost: a secure cookie would never come back
        "GENERIC_TIMEZONE": "UTC",
        "TZ": "UTC",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_HIRING_BANNER_ENABLED": "false",
        "N8N_DYNAMIC_BANNERS_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "true",
        # the workflows read their endpoints from the variables of workflow_env, and only those are here
        "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "all",
        "EXECUTIONS_DATA_SAVE_ON_ERROR": "all",
        "N8N_LOG_OUTPUT": "console",
        # a checkpoint waiting for its operator is stored, not lost: stopping need not wait for it
        "N8N_GRACEFUL_SHUTDOWN_TIMEOUT": str(int(GRACEFUL_SHUTDOWN_S)),
        # what 1.123 warns will become the defaults: Code nodes in a task runner, a pool of SQLite readers
        "N8N_RUNNERS_ENABLED": "true",
        "N8N_RUNNERS_BROKER_PORT": str(runner_broker_port(s)),
        "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": HOST,
        "DB_SQLITE_POOL_SIZE": "2",
        "N8N_GIT_NODE_DISABLE_BARE_REPOS": "true",
        **workflow_env(s),
    }


def running_pid(s: Settings) -> int | None:
    pid = read_pid(pid_path(s))
    if pid is None:
        return None
    if pid_alive(pid) and str(entry_point(s)) in cmdline(pid):
        return pid
    pid_path(s).unlink(missing_ok=True)
    return None


def answers(s: Settings, http: httpx.Client) -> bool:
    """True once n8n serves its REST API: while it starts, the editor's HTML page answers every path."""
    try:
        response = http.get(f"{base_url(s)}/rest/settings", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json")


def start(s: Settings) -> int:
    for port in (s.n8n_port, runner_broker_port(s)):
        if port_open(HOST, port):
            raise InfraError(
                f"port {port} is already in use by another process; set GRID_N8N_PORT (it uses the next too)"
            )
    node = shutil.which("node")
    if node is None:
        raise InfraError("node (Node.js 20) is needed to run n8n; run scripts/setup.sh")
    data_dir(s).mkdir(parents=True, exist_ok=True)
    data_dir(s).chmod(0o700)
    env = n8n_env(s, Path(node))
    pid = spawn_detached([node, str(entry_point(s)), "start"], log_path(s), cwd=root(s), env=env)
    pid_path(s).write_text(f"{pid}\n")
    logger.info("started n8n pid %d on %s, log %s", pid, base_url(s), log_path(s))
    return pid


def wait_ready(s: Settings, http: httpx.Client, pid: int) -> float:
    try:
        what = f"n8n at {base_url(s)}"
        return poll_until(lambda: answers(s, http), s.n8n_start_timeout_s, what, lambda: pid_alive(pid))
    except InfraError as exc:
        raise InfraError(f"{exc}\n--- last lines of {log_path(s)} ---\n{log_tail(log_path(s))}") from exc


# --- provisioning: owner, API key, credentials, workflows ------------------------------------------


def api_key_path(s: Settings) -> Path:
    return credentials_dir(s.home) / "n8n-api-key"


def _new_api_key(s: Settings, http: httpx.Client) -> str:
    session, who = N8nSession(http, base_url(s)), owner(s)
    if session.owner_exists():
        session.log_in(who)
    else:
        session.set_up_owner(who)  # logs in too
        _state_path(s).unlink(missing_ok=True)  # a new instance: the credentials we made were in the old one
    api_key_path(s).unlink(missing_ok=True)
    key = session.create_api_key(API_KEY_LABEL, API_KEY_SCOPES, expires_at_s=None)
    write_private(api_key_path(s), key)
    return key


def api(s: Settings, http: httpx.Client) -> N8nApi:
    """The public API with this grid's key; the owner and the key are created the first time."""
    if api_key_path(s).exists():
        client = N8nApi(http, base_url(s), api_key_path(s).read_text().strip())
        try:
            client.workflows()
            return client
        except N8nError as exc:  # a data directory made anew knows no key of ours
            logger.warning("the stored n8n API key is refused (%s); creating a new one", exc)
    return N8nApi(http, base_url(s), _new_api_key(s, http))


@dataclass(frozen=True)
class CredentialSpec:
    name: str
    type: str
    data: dict[str, Any]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.type, self.data], sort_keys=True).encode()).hexdigest()


def credential_specs(s: Settings) -> list[CredentialSpec]:
    kafka = s.kafka("n8n")
    authentication = kafka.username is not None
    sasl = {"username": kafka.username, "password": kafka.password, "saslMechanism": "scram-sha-256"}
    kafka_data = {
        "clientId": f"{s.topic_prefix}-n8n",
        "brokers": s.kafka_bootstrap,
        "ssl": False,
        "authentication": authentication,
        **(sasl if authentication else {}),
    }
    specs = [CredentialSpec(KAFKA_CREDENTIAL, "kafka", kafka_data)]
    linear_key = revealed(s.linear_api_key)
    if linear_key:  # Linear takes a personal key as the whole Authorization header, without "Bearer"
        specs.append(
            CredentialSpec(LINEAR_CREDENTIAL, "httpHeaderAuth", {"name": "Authorization", "value": linear_key})
        )
    return specs


def _state_path(s: Settings) -> Path:
    return root(s) / "provisioned.json"


def _load_state(s: Settings) -> dict[str, dict[str, str]]:
    path = _state_path(s)
    return dict(json.loads(path.read_text())) if path.exists() else {}


@contextmanager
def provisioned_credentials(s: Settings, client: N8nApi) -> Iterator[dict[str, str]]:
    """Credential ids by name; one whose data changed (a rotated password) is made anew, and the old one
    deleted once the workflows that used it point at the new one (after the ``with`` block)."""
    state = _load_state(s)
    stale, ids = [], {}
    for spec in credential_specs(s):
        known = state.get(spec.name)
        if known is None or known["digest"] != spec.digest():
            if known is not None:
                stale.append(known["id"])
            known = {"id": client.create_credential(spec.name, spec.type, spec.data), "digest": spec.digest()}
            state[spec.name] = known
        ids[spec.name] = known["id"]
    yield ids
    _state_path(s).unlink(missing_ok=True)  # write_private keeps an existing file; it holds digests of secrets
    write_private(_state_path(s), json.dumps(state, indent=2) + "\n")
    for credential_id in stale:
        client.delete_credential(credential_id)


def load_workflow(path: Path, credential_ids: dict[str, str]) -> dict[str, Any]:
    """A shipped workflow as the public API takes it, its credentials pointed at this instance's."""
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        for ref in node.get("credentials", {}).values():
            if ref["name"] in credential_ids:
                ref["id"] = credential_ids[ref["name"]]
    return {key: workflow[key] for key in ("name", "nodes", "connections", "settings")}


def missing_endpoints(s: Settings, stem: str) -> list[str]:
    configured = {
        "discord": s.discord_webhook_url is not None,
        "linear": s.linear_api_key is not None and bool(s.linear_team_id),
    }
    return [need for need in NEEDS.get(stem, ()) if not configured[need]]


def import_workflows(s: Settings, client: N8nApi) -> list[dict[str, Any]]:
    """Import (or update) every ``connectors/n8n/*.json`` and activate those whose endpoints are set."""
    existing = {w["name"]: w for w in client.workflows()}
    results = []
    with provisioned_credentials(s, client) as credential_ids:
        for path in sorted(WORKFLOWS_DIR.glob("*.json")):
            results.append(_import_one(s, client, path, credential_ids, existing))
    return results


def _import_one(
    s: Settings, client: N8nApi, path: Path, credential_ids: dict[str, str], existing: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    workflow = load_workflow(path, credential_ids)
    found = existing.get(workflow["name"])
    if found is not None:
        if found.get("active"):
            client.deactivate(found["id"])  # an active workflow keeps its old trigger until re-activated
        workflow_id = client.update_workflow(found["id"], workflow)["id"]
    else:
        workflow_id = client.create_workflow(workflow)["id"]
    missing = missing_endpoints(s, path.stem)
    if not missing:
        client.activate(workflow_id)
    state = "active" if not missing else f"inactive: {', '.join(missing)} not configured"
    return {"file": path.name, "name": workflow["name"], "id": workflow_id, "state": state}


# --- up, down, status ------------------------------------------------------------------------------


def _client(http: httpx.Client | None) -> AbstractContextManager[httpx.Client]:
    """The caller's client, left open, or one of our own, closed afterwards."""
    return nullcontext(http) if http is not None else httpx.Client()


@contextmanager
def _answered(what: str) -> Iterator[None]:
    """n8n's refusals and HTTP failures as the InfraError every infra command reports."""
    try:
        yield
    except (N8nError, httpx.HTTPError) as exc:
        raise InfraError(f"could not {what}: {exc}") from exc


def up(s: Settings, http: httpx.Client | None = None) -> dict[str, Any]:
    """Install, start, provision and import as needed; harmless when running (it re-imports the files)."""
    root(s).mkdir(parents=True, exist_ok=True)
    with _client(http) as client:
        timings_s = {"npm_install_s": install(s)}
        pid = running_pid(s)
        state = "already running" if pid is not None else "started"
        pid = pid if pid is not None else start(s)
        timings_s["start_s"] = wait_ready(s, client, pid)
        begun = time.monotonic()
        # the triggers subscribe when a workflow is activated: its topics and the principal's ACLs first
        ensure_topics(s)
        with _answered("provision n8n"):
            workflows = import_workflows(s, api(s, client))
        timings_s["provision_s"] = time.monotonic() - begun
    return {"state": state, "pid": pid, "url": base_url(s), "workflows": workflows, "timings_s": timings_s}


def down(s: Settings) -> str:
    pid = running_pid(s)
    if pid is None:
        return "not running"
    logger.info("stopping n8n pid %d", pid)
    terminate(pid, STOP_TIMEOUT_S)
    pid_path(s).unlink(missing_ok=True)
    return "stopped"


def status(s: Settings, http: httpx.Client | None = None) -> dict[str, Any]:
    pid = running_pid(s)
    info: dict[str, Any] = {"state": "stopped", "pid": pid, "url": base_url(s), "version": s.n8n_version}
    if pid is None:
        return info
    with _client(http) as client:
        if not answers(s, client):
            return {**info, "state": "not answering"}
        with _answered("read n8n's state"):
            public = api(s, client)
            workflows, executions = public.workflows(), public.executions()
    counts: dict[str, int] = {}
    for execution in executions:
        counts[execution["status"]] = counts.get(execution["status"], 0) + 1
    return {
        **info,
        "state": "running",
        "version": installed_version(s),
        "workflows": [{"name": w["name"], "id": w["id"], "active": w["active"]} for w in workflows],
        "executions": counts,
    }
