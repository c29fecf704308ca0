"""Where the dashboard's data comes from: a read-only Postgres pool and the proposals topic's high watermark.

Connections are shared by every browser session of the process (``st.cache_resource``); query results
are cached for a second (``st.cache_data``) so many open tabs cost one query per refresh, not one each.
"""

from __future__ import annotations

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
from core.config import Settings, role_url
from core.kafka_access import KafkaAccess

logger = logging.getLogger(__name__)

READER_ROLE = "grid_reader"
# Sent with every connection: even the fallback role can then not write by accident.
READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
CONNECT_TIMEOUT_S = 5
POOL_SIZE_MAX = 4
QUERY_TTL_S = 1.0
WATERMARK_TIMEOUT_S = 2.0

R = TypeVar("R")


class SourceError(RuntimeError):
    """Postgres cannot be reached or has no ledger schema; the page shows why instead of a traceback."""


@dataclass(frozen=True)
class Target:
    url: str  # carries the read-only option, so code that only takes a URL (verify) is read-only too
    role: str
    note: str  # shown in the sidebar: how the dashboard reads


def settings() -> Settings:
    return config.load()


def reader_url(s: Settings) -> str:
    """GRID_DASHBOARD_DATABASE_URL, else the settings' URL with the user replaced by the reader role."""
    if s.dashboard_database_url:
        return s.dashboard_database_url
    return role_url(s.database_url, READER_ROLE)


def _read_only(url: str) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}options={READ_ONLY_OPTIONS.replace(' ', '%20').replace('=', '%3D')}"


def _probe(url: str) -> str:
    """The role ``url`` logs in as, after checking it can read the ledger; raises psycopg.Error otherwise."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute("SELECT 1 FROM ledger LIMIT 1")
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


@st.cache_resource(show_spinner=False, ttl=60)
def target(main_url: str, reader: str) -> Target:
    """The reader role when it can log in and read; else the main URL, still in read-only transactions.

    Cached for a minute only, so a dashboard started before ``gridgov migrate`` created the role
    switches to it without a restart.
    """
    try:
        return Target(_read_only(reader), _probe(_read_only(reader)), "read-only role")
    except psycopg.Error as exc:
        logger.warning("reader role unavailable, reading through the main URL: %s", str(exc).strip())
    try:
        return Target(_read_only(main_url), _probe(_read_only(main_url)), "main role, read-only transactions")
    except psycopg.errors.UndefinedTable as exc:
        raise SourceError("The database has no ledger yet: run `gridgov migrate` (the validator does it too).") from exc
    except psycopg.Error as exc:
        host = urlsplit(main_url).netloc.rsplit("@", 1)[-1]
        raise SourceError(f"Postgres at {host} is unreachable: {str(exc).strip()}") from exc


def current_target() -> Target:
    s = settings()
    return target(s.database_url, reader_url(s))


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
def _cached(url: str, name: str, args: tuple[Any, ...]) -> Any:
    query: Callable[..., Any] = getattr(queries, name)
    try:
        with _pool(url).connection() as conn:
            return query(conn, *args)
    except psycopg.OperationalError as exc:
        raise SourceError(f"Postgres query failed: {str(exc).strip()}") from exc


def forget_cached() -> None:
    """Drop cached query results, for when the page knows the data just changed."""
    _cached.clear()


def fetch(query: Callable[..., R], *args: Any) -> R:
    """Run a function of ``dashboard.queries`` on the read-only pool, cached for QUERY_TTL_S."""
    result: R = _cached(current_target().url, query.__name__, args)
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
