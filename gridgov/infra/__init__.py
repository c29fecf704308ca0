"""Local Kafka and PostgreSQL for development, tests and CI, without Docker.

``up`` fetches/installs, initialises and starts what is missing and waits until each service answers;
a service whose ``GRID_KAFKA_BOOTSTRAP`` / ``GRID_DATABASE_URL`` is set is external: never started or
stopped here, only checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core import config
from core.config import Settings
from core.process import InfraError, exclusive
from gridgov.infra import kafka, n8n, postgres

SERVICES = ("kafka", "postgres")
# n8n is optional (GRID_N8N): started after the broker it reads, by default only when enabled
_MODULES = {"kafka": kafka, "postgres": postgres, "n8n": n8n}
# longer than the slowest holder: a cold Maven fetch plus format plus start
LOCK_TIMEOUT_S = 1200.0

__all__ = ["SERVICES", "InfraError", "down", "status", "up", "wait_ready"]


def _selected(services: Iterable[str] | None, s: Settings) -> list[str]:
    chosen = list(SERVICES + (("n8n",) if s.n8n_enabled else ()) if services is None else services)
    unknown = set(chosen) - set(_MODULES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {tuple(_MODULES)}")
    return chosen


def up(services: Iterable[str] | None = None, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Start the services (all by default) and wait until they answer.

    Returns per service its state ("started", "already running", "external"), address and the seconds
    each step took (``timings_s``: fetch/format/start for Kafka, install/initdb/start/createdb for Postgres).
    """
    s = settings or config.load()
    with exclusive(s.home / "infra.lock", LOCK_TIMEOUT_S):
        return {name: _MODULES[name].up(s) for name in _selected(services, s)}


def down(services: Iterable[str] | None = None, settings: Settings | None = None) -> dict[str, str]:
    """Stop what ``up`` started (by its pid file / data dir); external services are left alone."""
    s = settings or config.load()
    with exclusive(s.home / "infra.lock", LOCK_TIMEOUT_S):
        return {name: _MODULES[name].down(s) for name in _selected(services, s)}


def status(services: Iterable[str] | None = None, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    s = settings or config.load()
    return {name: _MODULES[name].status(s) for name in _selected(services, s)}


def wait_ready(
    services: Iterable[str] | None = None, timeout_s: float = 90.0, settings: Settings | None = None
) -> dict[str, float]:
    """Wait until each service (local or external) answers a real client call; return seconds per service."""
    s = settings or config.load()
    waited_s: dict[str, float] = {}
    for name in _selected(services, s.replace(n8n_enabled=False)):  # n8n's readiness is part of its own up
        if name == "kafka":
            log = None if s.kafka_bootstrap_external else kafka.log_path(s)
            waited_s[name] = kafka.wait_ready(kafka.probe_access(s), timeout_s, log=log)
        else:
            url = s.database_url_external or postgres.admin_url(s)
            waited_s[name] = postgres.wait_ready(url, timeout_s)
    return waited_s
