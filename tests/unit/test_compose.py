"""docker-compose.yml: the services exist, run the right images and commands, and get the env they need."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core import config

ROOT = Path(__file__).resolve().parents[2]
APP_COMMANDS = {
    "validator": ["gridgov", "validator", "--no-migrate"],
    "keys": ["sh", "-c", "gridgov live-keys --out /grid/keys && chown -R grid /grid/keys"],
    "meter": ["gridgov", "meter", "--key", "/grid/keys/meter.g0.key", "--registry", "/grid/keys/registry.json"],
    "agents": ["gridgov", "agent", "run-all", "--keys-dir", "/grid/keys"],
    "sinks": ["gridgov", "sinks"],
    "dashboard": ["gridgov", "dashboard"],
}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def test_all_services_are_declared(services: dict[str, Any]) -> None:
    assert {"kafka", "postgres", "init", *APP_COMMANDS} <= set(services)


def broker_properties() -> dict[str, str]:
    """The properties the compose broker's script writes (its heredoc, with the shell's substitutions left in)."""
    script = (ROOT / "scripts" / "compose-kafka.sh").read_text()
    body = script.split('cat >"$CONFIG" <<PROPERTIES\n', 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines())


def test_kafka_is_a_single_secured_kraft_node_of_our_version(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{config.load().kafka_version}"
    assert kafka["entrypoint"] == ["bash", "/grid/compose-kafka.sh"]
    assert "./scripts/compose-kafka.sh:/grid/compose-kafka.sh:ro" in kafka["volumes"]
    props = broker_properties()
    assert props["process.roles"] == "broker,controller"
    assert "CLIENT://kafka:9092" in props["advertised.listeners"].split(",")
    # every listener authenticates; nothing is allowed where no ACL says so
    assert {p.split(":")[1] for p in props["listener.security.protocol.map"].split(",")} == {"SASL_PLAINTEXT"}
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert (props["super.users"], props["allow.everyone.if.no.acl.found"]) == ("User:admin", "false")
    assert props["auto.create.topics.enable"] == "false"
    replication = [v for k, v in props.items() if k.endswith((".replication.factor", ".min.isr"))]
    assert replication and set(replication) == {"1"}
    for principal in ("ADMIN", "VALIDATOR", "PRODUCER", "SINKS", "DASHBOARD"):
        assert kafka["environment"][f"GRID_KAFKA_{principal}_PASSWORD"].startswith(
            f"${{GRID_KAFKA_{principal}_PASSWORD:?"
        )
    assert "--command-config" in kafka["healthcheck"]["test"][-1]


KAFKA_PRINCIPALS = {
    "init": "admin",
    "validator": "validator",
    "meter": "producer",
    "agents": "producer",
    "sinks": "sinks",
    "dashboard": "dashboard",
}


@pytest.mark.parametrize(("name", "principal"), sorted(KAFKA_PRINCIPALS.items()))
def test_each_service_logs_in_to_kafka_as_its_own_principal(
    services: dict[str, Any], name: str, principal: str
) -> None:
    env = services[name]["environment"]
    assert env["GRID_KAFKA_USERNAME"] == principal
    assert env["GRID_KAFKA_PASSWORD"].startswith(f"${{GRID_KAFKA_{principal.upper()}_PASSWORD:?")


def test_postgres_image_and_database(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert postgres["environment"]["POSTGRES_DB"] == "grid"
    assert "healthcheck" in postgres


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_service_command_and_env(services: dict[str, Any], name: str) -> None:
    service = services[name]
    env = service["environment"]
    assert service["build"] == "."
    assert service["command"] == APP_COMMANDS[name]
    assert env["GRID_KAFKA_BOOTSTRAP"] == "kafka:9092"
    # the owner's URL (migrations) only where the database is migrated: init, which is not an app service
    assert "GRID_DATABASE_URL" not in env
    assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    # Only the validator and the one-shot key issuer hold the root secret, required there.
    if name in ("validator", "keys"):
        assert env["GRID_KEY_SECRET"].startswith("${GRID_KEY_SECRET:?")
    else:
        assert "GRID_KEY_SECRET" not in env


DATABASE_ROLES = {
    ("init", "GRID_DATABASE_URL"): ("postgres", "GRID_OWNER_DB_PASSWORD"),
    ("meter", "GRID_DASHBOARD_DATABASE_URL"): ("grid_reader", "GRID_READER_DB_PASSWORD"),
    ("agents", "GRID_DASHBOARD_DATABASE_URL"): ("grid_reader", "GRID_READER_DB_PASSWORD"),
    ("validator", "GRID_VALIDATOR_DATABASE_URL"): ("grid_validator", "GRID_VALIDATOR_DB_PASSWORD"),
    ("sinks", "GRID_SINKS_DATABASE_URL"): ("grid_sinks", "GRID_SINKS_DB_PASSWORD"),
    ("dashboard", "GRID_DASHBOARD_DATABASE_URL"): ("grid_reader", "GRID_READER_DB_PASSWORD"),
}


@pytest.mark.parametrize(("service", "variable"), sorted(DATABASE_ROLES))
def test_each_service_connects_as_its_own_database_role(services: dict[str, Any], service: str, variable: str) -> None:
    role, secret = DATABASE_ROLES[(service, variable)]
    url = urlsplit(services[service]["environment"][variable])
    assert (url.scheme, url.hostname, url.port, url.path) == ("postgresql", "postgres", 5432, "/grid")
    assert (url.username, url.password) == (role, f"${{{secret}}}")
    pg_env = services["postgres"]["environment"]
    password_set = f"${{{secret}:?"
    assert pg_env["POSTGRES_PASSWORD" if role == "postgres" else secret].startswith(password_set)
    if role != "postgres":  # created with that password when the data directory is
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in (ROOT / "scripts" / "compose-pg-roles.sh").read_text()


def test_the_validator_founds_ledgers_only_for_known_operators(services: dict[str, Any]) -> None:
    assert services["validator"]["environment"]["GRID_FOUNDING_OPERATORS"].startswith("${GRID_FOUNDING_OPERATORS:?")


def test_init_prepares_schema_and_topics_after_both_servers_are_healthy(services: dict[str, Any]) -> None:
    init = services["init"]
    assert "gridgov migrate" in init["command"][-1] and "gridgov topics" in init["command"][-1]
    assert {k: v["condition"] for k, v in init["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }


def test_dockerfile_installs_the_package() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert lines[[ln.startswith("FROM") for ln in lines].index(True)] == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install .") for ln in lines)


def test_dockerfile_copies_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert {p for p in packages if f"COPY {p}/ {p}/" not in dockerfile} == set()


DATABASE_URL_VARIABLES = {
    "GRID_DATABASE_URL",
    "GRID_VALIDATOR_DATABASE_URL",
    "GRID_SINKS_DATABASE_URL",
    "GRID_DASHBOARD_DATABASE_URL",
}


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_each_service_holds_only_its_own_credentials(services: dict[str, Any], name: str) -> None:
    """One Kafka login (none for the key issuer) and at most one database role, the one listed for it."""
    env = services[name]["environment"]
    urls = DATABASE_URL_VARIABLES & env.keys()
    assert {(name, v) for v in urls} <= DATABASE_ROLES.keys() and len(urls) <= 1
    secrets = {k for k, v in env.items() if isinstance(v, str) and "PASSWORD" in v and k not in urls}
    assert secrets == ({"GRID_KAFKA_PASSWORD"} if name in KAFKA_PRINCIPALS else set())
    assert ("GRID_KAFKA_USERNAME" in env) == (name in KAFKA_PRINCIPALS)


def _key_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in service.get("volumes", []) if isinstance(v, dict) and v.get("source") == "grid-keys"]


def test_the_live_key_files_reach_each_service_through_its_own_subdirectory(services: dict[str, Any]) -> None:
    # the issuer writes the whole volume; the meter and the participants each read their part only
    assert services["keys"]["volumes"] == ["grid-keys:/grid/keys"]
    for name, subpath in (("meter", "meter"), ("agents", "agents")):
        [mount] = _key_mounts(services[name])
        assert (mount["target"], mount["read_only"], mount["volume"]["subpath"]) == ("/grid/keys", True, subpath)
        assert services[name]["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    others = [n for n in services if n not in ("keys", "meter", "agents")]
    assert not any("grid-keys" in str(services[n].get("volumes", [])) for n in others)
    # the operator's private key reaches the meter alone (it signs the genesis), read-only
    assert any(str(v).endswith(":/grid/home/operators:ro") for v in services["meter"]["volumes"])
    assert not any("operators" in str(services[n].get("volumes", [])) for n in services if n != "meter")
