"""The one settings object: defaults, the environment over the settings file over the defaults, blank
means unset, secrets never printed, ``as_env()`` hands a child the same settings, the README's table."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from connectors import gemini, linear
from connectors.retry import RetryPolicy
from core import config
from core.config import REPO_ROOT, Settings
from core.pg_access import stored_password
from gridgov import cli
from gridgov.commands import config as command
from sinks.conflicts import CONFLICT_WINDOW_S
from sinks.delivery import STALL_PROBE_INTERVAL_S
from sinks.settings import SinkSettings

SECRETS = {
    "GRID_KEY_SECRET": "00ff" * 16,
    "LINEAR_API_KEY": "lin_api_secret",
    "DISCORD_WEBHOOK_URL": "https://discord.example/api/webhooks/1/hook-token",
    "GEMINI_API_KEY": "gemini-secret",
    "GOOGLE_API_KEY": "google-secret",
    "GRID_KAFKA_PASSWORD": "kafka-secret",
}
# The only variables code outside core/config.py may read: they belong to other programs.
FOREIGN_VARIABLES = {"JAVA_HOME", "PYTHONPATH"}


def set_env(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_every_variable_has_a_name_a_default_and_a_meaning() -> None:
    variables = config.variables()
    assert len({v.name for v in variables}) == len(variables) == len(Settings.model_fields)
    assert all(v.meaning and "|" not in v.meaning for v in variables)


def test_defaults(settings_file: Path) -> None:
    s = config.load()
    assert {v.field: getattr(s, v.field) for v in config.variables()} == {
        **{v.field: v.default for v in config.variables()},
        "env_file": settings_file,
    }
    assert s.home == REPO_ROOT / ".grid"
    assert s.kafka_bootstrap == "127.0.0.1:59092"
    url = urlsplit(s.database_url)  # with the owner's password once `gridgov infra up` generated it
    assert (url.username, url.hostname, url.port, url.path) == ("postgres", "127.0.0.1", 55432, "/grid")
    assert url.password == stored_password(s.home, "postgres")
    assert s.topic("proposals") == "grid.proposals"
    assert set(config.origins().values()) == {config.DEFAULT, config.ENVIRONMENT}  # GRID_ENV_FILE, set above


def test_the_environment_overrides_defaults_with_typed_values(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(
        monkeypatch,
        {"GRID_KAFKA_PORT": "1234", "GRID_PG_FAST": "1", "GRID_SINK_LINGER_S": "0.25", "GRID_HOME": "/tmp/g"},
    )
    s = config.load()
    assert (s.kafka_port, s.pg_fast, s.sink_linger_s, s.home) == (1234, True, 0.25, Path("/tmp/g"))
    assert s.kafka_bootstrap == "127.0.0.1:1234"
    assert config.origins()["GRID_KAFKA_PORT"] == config.ENVIRONMENT


def test_blank_values_mean_unset_and_others_are_stripped(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file.write_text("GRID_TOPIC_PREFIX=filed\nGRID_OPERATOR=\n")
    set_env(
        monkeypatch, {"GRID_TOPIC_PREFIX": "", "GRID_KAFKA_PORT": "  ", "GRID_DATABASE_URL": "", "GRID_PG_PORT": " 7 "}
    )
    s = config.load()
    # A blank variable unsets: the default applies, not the file's value.
    assert (s.topic_prefix, s.kafka_port, s.database_url_external, s.pg_port) == ("grid", 59092, None, 7)
    assert s.operator == "operator"
    origins = config.origins()
    assert {origins[name] for name in ("GRID_TOPIC_PREFIX", "GRID_KAFKA_PORT", "GRID_OPERATOR")} == {config.DEFAULT}


def test_the_settings_file_lies_beneath_the_environment(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file.write_text("# comments are allowed\nGRID_TOPIC_PREFIX=filed\nGRID_PG_PORT=1\nNOT_OURS=x\n")
    monkeypatch.setenv("GRID_PG_PORT", "2")
    s = config.load()
    assert (s.topic_prefix, s.pg_port) == ("filed", 2)
    origins = config.origins()
    assert (origins["GRID_TOPIC_PREFIX"], origins["GRID_PG_PORT"], origins["GRID_PG_DATABASE"]) == (
        config.FILE,
        config.ENVIRONMENT,
        config.DEFAULT,
    )


def test_the_settings_file_is_grid_env_in_grid_home_by_default(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GRID_ENV_FILE")
    monkeypatch.setenv("GRID_HOME", str(tmp_path))
    (tmp_path / "grid.env").write_text("GRID_OPERATOR=board\n")
    assert config.settings_file() == tmp_path / "grid.env"
    assert config.load().operator == "board"


def test_secrets_are_never_printed(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, SECRETS)
    set_env(monkeypatch, {"GRID_DATABASE_URL": "postgresql://grid:db-password@db:5432/grid"})
    s = config.load()
    assert isinstance(s.key_secret, SecretStr) and s.key_secret.get_secret_value() == SECRETS["GRID_KEY_SECRET"]
    assert cli.main(["config"]) == 0
    printed = capsys.readouterr().out
    assert not [name for name, secret in SECRETS.items() if secret in printed + repr(s) + str(s)]
    assert "db-password" not in printed and "postgresql://grid:***@db:5432/grid" in printed
    assert printed.count("set (hidden)") == len(SECRETS)


def test_a_child_started_with_as_env_loads_the_same_settings(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file.write_text("GRID_TOPIC_PREFIX=filed\nGRID_SINK_BACKOFF_BASE_S=0.05\nGRID_OPERATOR=board\n")
    set_env(monkeypatch, {**SECRETS, "GRID_VALIDATOR_VERSION": "parent-law", "GRID_PG_FAST": "1"})
    parent = config.load().replace(
        validator_version=None,  # unset, although the environment the child inherits sets it…
        operator="operator",  # …and the default, although the settings file the child reads says otherwise
        database_url_external="postgresql://postgres@db/run",
        home=Path("/tmp/run home"),
        sink_stall_probe_s=0.1,
    )
    set_env(monkeypatch, {**os.environ, **parent.as_env()})  # what the child is started with
    assert config.load() == parent


def test_replace_validates_and_refuses_unknown_names(settings_file: Path) -> None:
    s = config.load()
    assert s.replace(kafka_port="5").kafka_port == 5
    assert s.replace(key_secret="ab").key_secret == SecretStr("ab")
    with pytest.raises(TypeError, match="kafka_prot"):
        s.replace(kafka_prot=5)
    with pytest.raises(ValidationError):
        s.replace(checkpoint_every=-1)


def test_an_invalid_value_stops_every_command_naming_the_variable_not_the_value(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRID_KAFKA_PORT", "not-a-port")
    assert cli.main(["config"]) == 2
    err = capsys.readouterr().err
    assert "GRID_KAFKA_PORT" in err and "not-a-port" not in err


def test_sub_settings_are_built_from_the_settings(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"LINEAR_API_KEY": "k", "LINEAR_TEAM_ID": "t", "GRID_SINK_RETRY_ATTEMPTS": "2"})
    sinks = SinkSettings.from_settings(config.load())
    assert (sinks.linear_api_key, sinks.linear_online, sinks.discord_online) == ("k", True, False)
    assert sinks.retry == RetryPolicy(2, RetryPolicy().backoff_base_s, RetryPolicy().backoff_cap_s)


def test_the_defaults_agree_with_the_components_own(settings_file: Path) -> None:
    """Components keep defaults for direct use (tests, libraries); configured, they get these."""
    s = config.load()
    assert SinkSettings.from_settings(s).retry == RetryPolicy()
    assert (s.sink_stall_probe_s, s.sink_conflict_window_s) == (STALL_PROBE_INTERVAL_S, CONFLICT_WINDOW_S)
    assert (s.gemini_model, s.gemini_timeout_s) == (gemini.MODEL_DEFAULT, gemini.TIMEOUT_S_DEFAULT)
    assert s.linear_url == linear.LINEAR_URL_DEFAULT


def test_the_readme_table_is_the_generated_one() -> None:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Configuration") + 1
    table = [ln for ln in lines[start:] if ln.startswith("|")]
    first = lines.index(table[0])
    assert lines[first : first + len(table)] == table, "the table must be one block"
    assert "\n".join(table) == command.markdown_table(), "regenerate it with `gridgov config --markdown`"


def test_config_markdown_prints_the_table(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == command.markdown_table()


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _variable_read(node: ast.AST) -> ast.expr | None:
    """The name argument when ``node`` reads one variable: os.environ.get(X), os.environ[X], os.getenv(X)."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        return node.slice
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute)):
        return None
    reads = node.func.attr == "getenv" or (node.func.attr == "get" and _is_environ(node.func.value))
    return node.args[0] if reads else None


def _environment_reads(path: Path) -> set[str]:
    reads = [r for node in ast.walk(ast.parse(path.read_text())) if (r := _variable_read(node)) is not None]
    return {r.value if isinstance(r, ast.Constant) else ast.unparse(r) for r in reads}


def test_only_core_config_reads_the_environment_for_settings() -> None:
    packages = ("law", "schemas", "core", "connectors", "streams", "sinks", "agents", "dashboard", "gridgov")
    modules = [p for package in packages for p in (REPO_ROOT / package).rglob("*.py") if p.name != "config.py"]
    modules.append(REPO_ROOT / "gridgov" / "commands" / "config.py")
    reads = {str(p.relative_to(REPO_ROOT)): _environment_reads(p) - FOREIGN_VARIABLES for p in modules}
    assert {path: names for path, names in reads.items() if names} == {}
