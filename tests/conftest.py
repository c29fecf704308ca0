"""Shared fixtures: a real Kafka broker and a real PostgreSQL server for integration tests.

Each is resolved once per session, first match wins:
1. ``GRID_KAFKA_BOOTSTRAP`` / ``GRID_DATABASE_URL``: a server someone else runs;
2. a container, when a Docker engine answers;
3. the project's own local processes (``gridgov.infra.up``), left running after the session so the
   next run starts warm.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from connectors.migrate import apply_migrations
from gridgov import infra

logger = logging.getLogger(__name__)

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"
DOCKER_INFO_TIMEOUT_S = 10
CONTAINER_START_TIMEOUT_S = 120
ADMIN_TIMEOUT_S = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=DOCKER_INFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def kafka_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # the broker advertises the address clients must use, so it must know the host port before it starts:
    # listen on the same port number inside and outside the container
    port = _free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{port}",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="PLAINTEXT",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
        .waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(CONTAINER_START_TIMEOUT_S))
    )
    with container:
        yield f"localhost:{port}"


@contextmanager
def postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("GRID_KAFKA_BOOTSTRAP")
    if external:
        infra.wait_ready(["kafka"])
        yield external
    elif docker_available():
        with kafka_container() as bootstrap:
            yield bootstrap
    else:
        yield infra.up(["kafka"])["kafka"]["bootstrap"]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("GRID_DATABASE_URL")
    if external:
        infra.wait_ready(["postgres"])
        yield external
    elif docker_available():
        with postgres_container() as url:
            yield url
    else:
        yield infra.up(["postgres"])["postgres"]["url"]


def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logger})
    names = [t for t in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics if t.startswith(f"{prefix}.")]
    for future in admin.delete_topics(names, operation_timeout=ADMIN_TIMEOUT_S).values() if names else ():
        future.result(timeout=ADMIN_TIMEOUT_S)


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique topic prefix; its topics are deleted afterwards when the test used ``kafka_bootstrap``."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bootstrap = request.getfixturevalue("kafka_bootstrap") if "kafka_bootstrap" in request.fixturenames else None
    yield prefix
    if bootstrap is not None:
        _delete_topics(bootstrap, prefix)


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A uniquely named database on the server of ``server_url``; yields its URL, drops it afterwards."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            # FORCE: a test that leaked a connection must not make the drop fail
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    with temporary_database(database_url) as url:
        yield url


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """URL of a new database with the project's migrations applied, dropped after the test."""
    with temporary_database(database_url) as url:
        apply_migrations(url)
        yield url
