"""Where the dashboard's data comes from: a read-only Postgres pool and the proposals topic's high watermark.

Connections are shared by every browser session of the process (``st.cache_resource``); query results
are cached for a second (``st.cache_data``) so many open tabs cost one query per refresh, not one each.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import streamlit as st
from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg_pool import ConnectionPool

from connectors.readmodel import dashboard as queries
from core import config
from core.config import Settings
from core.kafka_access import KafkaAccess

logger = logging.getLogger(__name__)

# Sent with every connection, on top of the role that can write nothing: belt and braces.
READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
CONNECT_TIMEOUT_S = 5
POOL_SIZE_MAX = 4
QUERY_TTL_S = 1.0
WATERMARK_TIMEOUT_S = 2.0

R = TypeVar("R")


class SourceError(RuntimeError):
    """Postgres cannot be reached or has no ledger schema; the page shows why instead of a traceback."""


class StrongerRole(SourceError):
    """The dashboard was given a role that may change the ledger; it reads through none such."""


@dataclass(frozen=True)
class Target:
    url: str  # carries the read-only option, so code that only takes a URL (verify) is read-only too
    role: str


def settings() -> Settings:
    return config.load()


def _read_only(url: str) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}options={READ_ONLY_OPTIONS.replace(' ', '%20').replace('=', '%3D')}"


def _probe(url: str) -> tuple[str, bool]:
    """The role ``url`` logs in as and whether it may change the ledger (a superuser may, whether the
    ledger exists yet or not), after checking it can read it; raises psycopg.Error otherwise."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row is not None
        role, superuser = str(row[0]), bool(row[1])
        if superuser:
            return role, True
        conn.execute("SELECT 1 FROM ledger LIMIT 1")
        writes = conn.execute("SELECT has_table_privilege('ledger', 'INSERT, UPDATE, DELETE, TRUNCATE')").fetchone()
    assert writes is not None
    return role, bool(writes[0])


def check_reader(reader_url: str) -> Target:
    """The read-only role of ``reader_url``, or a SourceError saying why the dashboard will not read.

    Never a stronger role: a URL whose role may write the ledger is refused, not used read-only.
    """
    host = urlsplit(reader_url).netloc.rsplit("@", 1)[-1]
    try:
        role, can_write = _probe(_read_only(reader_url))
    except psycopg.errors.UndefinedTable as exc:
        raise SourceError("The database has no ledger yet: run `gridgov migrate` (the validator does it too).") from exc
    except psycopg.Error as exc:
        raise SourceError(
            f"The dashboard cannot read Postgres at {host} as its read-only role: {str(exc).strip()} "
            "(`gridgov infra up` gives the local cluster's roles their passwords; elsewhere set "
            "GRID_DASHBOARD_DATABASE_URL)"
        ) from exc
    if can_write:
        raise StrongerRole(
            f"The dashboard refuses to read as {role}, which may change the ledger: give it a read-only role "
            "(GRID_DASHBOARD_DATABASE_URL, role grid_reader)."
        )
    return Target(_read_only(reader_url), role)


# Cached for a minute only, so a dashboard started before `gridgov migrate` finds the role without a restart.
target = st.cache_resource(show_spinner=False, ttl=60)(check_reader)


def current_target() -> Target:
    return target(settings().reader_database_url)


@st.cache_resource(show_spinner=False, on_release=lambda pool: pool.close())
def _pool(url: str) -> ConnectionPool:
    # min_size=0: no background reconnects to a database that went away; connections are made on demand.
    return ConnectionPool(
        url,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
        min_size=0,
        max_size=POOL_SIZE_MAX,
        check=ConnectionPool.check_connection,
        open=True,
        name="dashboard",
    )


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def _cached(url: str, module: str, name: str, args: tuple[Any, ...]) -> Any:
    query: Callable[..., Any] = getattr(importlib.import_module(module), name)
    try:
        with _pool(url).connection() as conn:
            return query(conn, *args)
    except psycopg.OperationalError as exc:
        raise SourceError(f"Postgres query failed: {str(exc).strip()}") from exc


def forget_cached() -> None:
    """Drop cached query results, for when the page knows the data just changed."""
    _cached.clear()


def fetch(query: Callable[..., R], *args: Any) -> R:
    """Run a query function of ``connectors.readmodel`` on the read-only pool, cached for QUERY_TTL_S.

    The cache is keyed by the function's module and name (a function object is not a stable key).
    """
    result: R = _cached(current_target().url, query.__module__, query.__name__, args)
    return result


@st.cache_resource(show_spinner=False, on_release=lambda consumer: consumer.close())
def _watermark_consumer(kafka: KafkaAccess) -> Consumer:
    # Never subscribes or commits: it only asks the broker for offsets. The group id is required by the client.
    return Consumer(kafka.config(**{"group.id": "grid-dashboard", "enable.auto.commit": False}))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def high_watermark(kafka: KafkaAccess, topic: str) -> int | None:
    """The offset the next proposal will get, or None when the broker does not answer in time."""
    try:
        _, high = _watermark_consumer(kafka).get_watermark_offsets(
            TopicPartition(topic, 0), timeout=WATERMARK_TIMEOUT_S, cached=False
        )
    except KafkaException as exc:
        logger.warning("no watermark for %s: %s", topic, exc)
        return None
    return int(high)


def consumer_lag() -> int | None:
    """Proposals on the topic that the validator has not decided yet."""
    s = settings()
    topic = s.topic("proposals")
    high = high_watermark(s.kafka("dashboard"), topic)
    position = fetch(queries.consumer_next_offset, topic)
    if high is None:
        return None
    return max(0, high - (position or 0))
