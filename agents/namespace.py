"""A simulation run's namespace: a database ``grid_run_<run id>`` (dropped and recreated) with the
migrations, and topics under a fresh prefix (stale ones of the same run id deleted), so two runs never
share state and can be compared by their head hash."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from agents.simulation_config import SimulationConfig
from connectors.kafka_admin import delete_topics, ensure_topics
from connectors.migrate import apply_migrations
from core.config import Settings


@dataclass(frozen=True)
class Namespace:
    run_id: str
    settings: Settings  # with the run's database and topic prefix

    @property
    def topic(self) -> str:
        return self.settings.topic("proposals")


def _database_name(run_id: str) -> str:
    return "grid_run_" + run_id.replace("-", "_")


def _on_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _recreate_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        # FORCE: a dashboard still connected to the previous run must not block the new one.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _on_database(server_url, name)


def prepare_namespace(config: SimulationConfig, settings: Settings) -> Namespace:
    run_id = config.effective_run_id
    database_url = config.database_url or _recreate_database(settings.database_url, _database_name(run_id))
    apply_migrations(database_url)
    prefix = config.topic_prefix
    if prefix is None:
        # Topic deletion is asynchronous in Kafka, so a run never reuses a name: a random suffix,
        # and the previous run's topics of the same id are deleted.
        stale = f"{settings.topic_prefix}.{run_id}"
        delete_topics(settings, stale)
        prefix = f"{stale}.{secrets.token_hex(3)}"
    # a validator URL of its own (compose) is the same role and server, on the run's database
    validator_url = settings.validator_database_url_external
    if validator_url:
        validator_url = _on_database(validator_url, urlsplit(database_url).path.lstrip("/"))
    ns_settings = settings.replace(
        topic_prefix=prefix, database_url_external=database_url, validator_database_url_external=validator_url
    )
    ensure_topics(ns_settings)
    return Namespace(run_id, ns_settings)
