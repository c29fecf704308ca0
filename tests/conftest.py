"""Shared fixtures: a real Kafka broker and a real PostgreSQL server for integration tests.

Each is resolved once per session, first match wins:
1. ``GRID_KAFKA_BOOTSTRAP`` / ``GRID_DATABASE_URL``: a server someone else runs;
2. a container, when a Docker engine answers;
3. the project's own local processes (``gridgov.infra.up``), left running after the session so the
   next run starts warm.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from connectors.kafka_admin import delete_topics
from connectors.migrate import apply_migrations
from core import config
from core.config import Settings
from core.credentials import credentials_dir
from core.kafka_access import KafkaAccess, Principal
from gridgov import infra
from streams.workload import synthetic_operator
from tests.support.world import SECRET as WORLD_SECRET

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"
DOCKER_INFO_TIMEOUT_S = 10
CONTAINER_START_TIMEOUT_S = 120


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
    # the image's broker takes no SASL: every client connects unauthenticated
    os.environ["GRID_KAFKA_SASL"] = "0"
    with container:
        yield f"localhost:{port}"


@contextmanager
def postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
        yield container.get_connection_url()


def _server(
    env_var: str,
    service: str,
    container: Callable[[], AbstractContextManager[str]],
    address: Callable[[Settings], str],
) -> Iterator[str]:
    """The address of ``service``, resolved in the order the module docstring gives."""
    external = os.environ.get(env_var)
    if external:
        infra.wait_ready([service])
        yield external
    elif docker_available():
        with container() as found:
            yield found
    else:
        infra.up([service])
        yield address(config.load())  # after up: the local cluster's passwords exist now


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    yield from _server("GRID_KAFKA_BOOTSTRAP", "kafka", kafka_container, lambda s: s.kafka_bootstrap)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    yield from _server("GRID_DATABASE_URL", "postgres", postgres_container, lambda s: s.database_url)


def broker_settings(kafka_bootstrap: str) -> Settings:
    return config.load().replace(kafka_bootstrap_external=kafka_bootstrap)


def own_kafka_env(kafka_bootstrap: str, principal: Principal) -> dict[str, str]:
    """The environment that gives a child process (with its own GRID_HOME) the one Kafka identity of
    ``principal``, as compose gives each service its own."""
    own = broker_settings(kafka_bootstrap).kafka(principal)
    if own.username is None:
        return {}
    return {"GRID_KAFKA_USERNAME": own.username, "GRID_KAFKA_PASSWORD": own.password or ""}


def with_credentials(home: Path) -> Path:
    """``home`` given this machine's Kafka and Postgres credentials (every principal's and role's), as a
    GRID_HOME on the servers' host has them: for a test that runs a whole grid (several principals) in a
    home of its own."""
    source, target = credentials_dir(config.load().home), credentials_dir(home)
    target.mkdir(parents=True, exist_ok=True)
    for found in (*source.glob("kafka-*"), *source.glob("pg-*")):
        shutil.copy2(found, target / found.name)
    return home


@pytest.fixture(scope="session")
def kafka_access(kafka_bootstrap: str) -> KafkaAccess:
    """The test broker as its admin: for the tests' own clients, which check what the principals did."""
    return broker_settings(kafka_bootstrap).kafka("admin")


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique topic prefix; its topics are deleted afterwards when the test used ``kafka_bootstrap``."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bootstrap = request.getfixturevalue("kafka_bootstrap") if "kafka_bootstrap" in request.fixturenames else None
    yield prefix
    if bootstrap is not None:
        delete_topics(broker_settings(bootstrap), prefix)


# The secrets the integration tests sign their synthetic streams with: the validators they start trust
# those streams' operators to found a ledger.
TEST_SECRETS = (bytes(range(32)), WORLD_SECRET)


def grid_settings(kafka_bootstrap: str, database_url: str, topic_prefix: str) -> Settings:
    """The configuration, pointed at the test's broker, database and topic prefix."""
    return config.load().replace(
        topic_prefix=topic_prefix,
        kafka_bootstrap_external=kafka_bootstrap,
        database_url_external=database_url,
        founding_operators=",".join(synthetic_operator(secret).public_key for secret in TEST_SECRETS),
    )


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
