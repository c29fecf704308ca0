"""The shipped n8n workflows and how they are provisioned, without n8n: what each file triggers on, which
credentials it names, which endpoints it needs, and what the n8n process is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from pydantic import SecretStr

from connectors.kafka_admin import N8N_INPUTS, n8n_group_prefix, namespace_grants
from core import config
from core.config import Settings
from gridgov.infra import n8n

WORKFLOW_FILES = sorted(n8n.WORKFLOWS_DIR.glob("*.json"))
PUBLIC_API_FIELDS = {"name", "nodes", "connections", "settings"}


@pytest.fixture
def settings(settings_file: Path, tmp_path: Path) -> Settings:
    return config.load().replace(home=tmp_path, kafka_sasl=False)


def triggers(workflow: dict[str, object]) -> list[dict[str, object]]:
    nodes = workflow["nodes"]
    assert isinstance(nodes, list)
    return [node for node in nodes if node["type"] == "n8n-nodes-base.kafkaTrigger"]


def test_every_shipped_workflow_has_its_needs_declared() -> None:
    assert {path.stem for path in WORKFLOW_FILES} == set(n8n.NEEDS)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_each_workflow_reads_only_topics_and_groups_the_n8n_principal_is_granted(path: Path) -> None:
    workflow = json.loads(path.read_text())
    [trigger] = triggers(workflow)
    parameters = trigger["parameters"]
    assert isinstance(parameters, dict)
    prefix = "={{ $env.GRID_TOPIC_PREFIX }}"
    topic = parameters["topic"].removeprefix(f"{prefix}.")
    assert topic in N8N_INPUTS
    assert parameters["groupId"].startswith(f"{prefix}-n8n-")
    # a new workflow starts at the end of its topic: installing it must not replay a month of alerts
    assert parameters["options"]["fromBeginning"] is False


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_each_workflow_names_only_credentials_the_provisioning_makes(path: Path) -> None:
    workflow = json.loads(path.read_text())
    names = {ref["name"] for node in workflow["nodes"] for ref in node.get("credentials", {}).values()}
    assert names <= {n8n.KAFKA_CREDENTIAL, n8n.LINEAR_CREDENTIAL}
    http_nodes = [node for node in workflow["nodes"] if node["type"] == "n8n-nodes-base.httpRequest"]
    assert all(node["parameters"]["options"]["timeout"] > 0 for node in http_nodes)


def test_loading_a_workflow_points_its_credentials_at_this_instance() -> None:
    path = n8n.WORKFLOWS_DIR / "critical-alerts.json"
    loaded = n8n.load_workflow(path, {n8n.KAFKA_CREDENTIAL: "k1", n8n.LINEAR_CREDENTIAL: "l1"})
    assert set(loaded) == PUBLIC_API_FIELDS  # the public API refuses any other field
    ids = {ref["name"]: ref["id"] for node in loaded["nodes"] for ref in node.get("credentials", {}).values()}
    assert ids == {n8n.KAFKA_CREDENTIAL: "k1", n8n.LINEAR_CREDENTIAL: "l1"}


def test_a_workflow_whose_endpoints_are_not_set_stays_inactive(settings: Settings) -> None:
    assert n8n.missing_endpoints(settings, "critical-alerts") == ["discord", "linear"]
    configured = settings.replace(
        discord_webhook_url=SecretStr("https://discord.invalid/api/webhooks/1/t"),
        linear_api_key=SecretStr("lin_api_x"),
        linear_team_id="team",
    )
    assert [n8n.missing_endpoints(configured, stem) for stem in n8n.NEEDS] == [[], [], []]
    assert n8n.missing_endpoints(configured.replace(linear_team_id=None), "conflict-digest") == ["linear"]


def test_n8n_is_given_its_endpoints_and_none_of_the_grid_s_secrets(settings: Settings) -> None:
    s = settings.replace(key_secret=SecretStr("00" * 32), linear_api_key=SecretStr("lin_api_secret"))
    env = n8n.n8n_env(s, Path("/usr/bin/node"))
    assert "GRID_KEY_SECRET" not in env and "lin_api_secret" not in env.values()  # the Linear key is a credential
    assert env["N8N_LISTEN_ADDRESS"] == "127.0.0.1" and env["N8N_DIAGNOSTICS_ENABLED"] == "false"
    assert env["N8N_RUNNERS_BROKER_PORT"] == str(s.n8n_port + 1)
    assert env["N8N_USER_FOLDER"] == str(tmp_data_dir(s))


def tmp_data_dir(s: Settings) -> Path:
    return s.home / "n8n" / "data"


def test_the_install_pins_n8n_exactly() -> None:
    manifest = n8n.app_manifest("1.123.50")
    assert manifest["dependencies"] == {"n8n": "1.123.50"}
    assert manifest["overrides"] == {"xlsx": n8n.XLSX_FROM_REGISTRY}


def test_a_changed_password_makes_a_new_kafka_credential(settings: Settings) -> None:
    [before] = n8n.credential_specs(settings)
    assert before.data["authentication"] is False and before.data["ssl"] is False
    [after] = n8n.credential_specs(settings.replace(kafka_bootstrap_external="10.0.0.1:9092"))
    assert before.digest() != after.digest()


def test_the_n8n_principal_may_read_its_inputs_and_write_nothing(settings: Settings) -> None:
    grants = [g for g in namespace_grants(settings) if g.principal == "n8n"]
    operations = {op for g in grants for op in g.operations}
    assert operations == {AclOperation.READ, AclOperation.DESCRIBE}
    topics = {g.name for g in grants if g.resource == ResourceType.TOPIC}
    assert topics == {settings.topic(name) for name in N8N_INPUTS}
    [group] = [g for g in grants if g.resource == ResourceType.GROUP]
    assert (group.name, group.pattern) == (n8n_group_prefix(settings), ResourcePatternType.PREFIXED)
