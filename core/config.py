"""The project's configuration: every setting, its default and its meaning, in one frozen object.

Each setting is read from one environment variable (the field's alias). Beneath the environment lies
a settings file in dotenv syntax, ``grid.env`` in ``GRID_HOME`` or the file ``GRID_ENV_FILE`` names;
beneath that, the defaults below. A blank value means unset wherever it comes from: the default
applies, whatever a lower source says (so an empty variable also hides the file's value).

Nothing else in the project reads the environment for these: code is given a ``Settings`` (or a
small object built from one), a child process ``as_env()``, and ``gridgov config`` shows every value
and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core import pg_access
from core.kafka_access import KafkaAccess, Principal, access

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE_NAME = "grid.env"
DEFAULT, ENVIRONMENT, FILE = "default", "environment", "file"
# Each further local broker's ports are this far above the previous one's, so the default client and
# controller ports (59092, 59093) interleave with theirs instead of colliding.
KAFKA_NODE_PORT_STEP = 2
# Every broker is also a KRaft voter: more than this many on one machine only adds election traffic.
KAFKA_BROKERS_MAX = 9


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,  # as the environment is: GRID_HOME, not grid_home
        extra="ignore",  # the environment and the settings file hold much that is not ours
        validate_by_name=True,  # replace() and model_dump() use field names
        validate_by_alias=True,
    )

    # --- where the grid's state lives
    home: Path = Field(
        default=REPO_ROOT / ".grid",
        alias="GRID_HOME",
        description="jars, data directories, logs, pid files, the sinks' outbox and the generated key secret",
    )
    env_file: Path | None = Field(
        default=None,
        alias="GRID_ENV_FILE",
        description="settings file beneath the environment; unset: grid.env in GRID_HOME",
    )

    # --- Kafka and PostgreSQL
    kafka_bootstrap_external: str | None = Field(
        default=None,
        alias="GRID_KAFKA_BOOTSTRAP",
        description="an existing Kafka to use (none is started); unset: the local broker on GRID_KAFKA_PORT",
    )
    database_url_external: str | None = Field(
        default=None,
        alias="GRID_DATABASE_URL",
        description="an existing PostgreSQL to use (none is started); unset: the local cluster on GRID_PG_PORT",
    )
    topic_prefix: str = Field(
        default="grid",
        alias="GRID_TOPIC_PREFIX",
        description="namespace of every topic, `<prefix>.proposals` and so on",
    )
    kafka_port: int = Field(
        default=59092,
        alias="GRID_KAFKA_PORT",
        description="port of the local broker; with several, broker n listens on this + 2(n-1)",
    )
    kafka_controller_port: int = Field(
        default=59093,
        alias="GRID_KAFKA_CONTROLLER_PORT",
        description="KRaft controller port of the local broker; with several, broker n's is this + 2(n-1)",
    )
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=KAFKA_BROKERS_MAX,
        alias="GRID_KAFKA_BROKERS",
        description="brokers of the local Kafka cluster (each also a KRaft controller); from 3 on, topics get 3 "
        "replicas and min.insync.replicas=2 (`gridgov infra up --brokers` beats it)",
    )
    kafka_heap_mb: int = Field(
        default=1024,
        alias="GRID_KAFKA_HEAP_MB",
        description="JVM heap of the local Kafka, shared out among its brokers (each at least 256, if this is)",
    )
    kafka_version: str = Field(
        default="4.1.1",
        alias="GRID_KAFKA_VERSION",
        description="Kafka release of the local broker's jars and the compose image",
    )
    kafka_sasl: bool = Field(
        default=True,
        alias="GRID_KAFKA_SASL",
        description="authenticate to Kafka with SCRAM as each process's own principal (the local broker requires it); "
        "0: plaintext, for a broker without authentication",
    )
    kafka_username: str | None = Field(
        default=None,
        alias="GRID_KAFKA_USERNAME",
        description="this process's one Kafka principal (compose sets it per service); "
        "unset: each client's own, from GRID_HOME/credentials",
    )
    kafka_password: SecretStr | None = Field(
        default=None, alias="GRID_KAFKA_PASSWORD", description="the password of GRID_KAFKA_USERNAME"
    )
    pg_port: int = Field(default=55432, alias="GRID_PG_PORT", description="port of the local PostgreSQL cluster")
    pg_database: str = Field(
        default="grid", alias="GRID_PG_DATABASE", description="database created in the local cluster"
    )
    pg_fast: bool = Field(
        default=False,
        alias="GRID_PG_FAST",
        description="1: the local cluster runs without fsync; for throwaway test clusters, never for benchmarks",
    )

    # --- the law and its ledger
    key_secret: SecretStr | None = Field(
        default=None,
        alias="GRID_KEY_SECRET",
        description="the validator's root secret (hex) every participant's and the meter's key derives from; "
        "unset: one generated once into GRID_HOME/key.secret",
    )
    founding_operators: str | None = Field(
        default=None,
        alias="GRID_FOUNDING_OPERATORS",
        description="Ed25519 public keys (hex, comma-separated) the validator trusts to sign a genesis; "
        "unset: those in GRID_HOME/operators",
    )
    validator_version: str | None = Field(
        default=None,
        alias="GRID_VALIDATOR_VERSION",
        description="law version stamped on entries and rejections; unset: the git commit (+`-dirty`)",
    )
    checkpoint_every: int = Field(
        default=10_000,
        ge=0,
        alias="GRID_CHECKPOINT_EVERY",
        description="ledger entries between the validator's state checkpoints (0: none)",
    )
    operator: str = Field(
        default="operator",
        alias="GRID_OPERATOR",
        description="the operator the CLI signs governance commands as, with GRID_HOME/operators/<name>.key",
    )
    log_level: str = Field(
        default="INFO", alias="GRID_LOG_LEVEL", description="level of the JSON logs on stderr (`--log-level` beats it)"
    )

    # --- the live grid (`gridgov up`)
    tick_s: float = Field(
        default=5.0,
        gt=0,
        alias="GRID_TICK_S",
        description="wall-clock seconds between the live grid's meter entries (one grid tick each)",
    )
    live_scenario: str = Field(
        default="default",
        alias="GRID_LIVE_SCENARIO",
        description="scenario (bundled name or TOML file) whose participants, profiles and policy the live grid runs",
    )
    live_market: str = Field(
        default="book",
        alias="GRID_LIVE_MARKET",
        description="how the live participants trade: offers, book or clearing (see `gridgov simulate --market`)",
    )

    # --- the sinks
    linear_api_key: SecretStr | None = Field(
        default=None,
        alias="LINEAR_API_KEY",
        description="with LINEAR_TEAM_ID, rejections become Linear tickets; unset: they go to the outbox",
    )
    linear_team_id: str | None = Field(
        default=None, alias="LINEAR_TEAM_ID", description="Linear team the tickets are filed in"
    )
    linear_url: str = Field(
        default="https://api.linear.app/graphql",
        alias="GRID_LINEAR_URL",
        description="Linear's GraphQL endpoint (tests point it at a stand-in)",
    )
    discord_webhook_url: SecretStr | None = Field(
        default=None,
        alias="DISCORD_WEBHOOK_URL",
        description="Discord webhook critical alerts are posted to; unset: they go to the outbox",
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8501",
        alias="GRID_DASHBOARD_URL",
        description="dashboard address linked from tickets and alerts",
    )
    sink_retry_attempts: int = Field(
        default=6, alias="GRID_SINK_RETRY_ATTEMPTS", description="requests per delivery before a sink stalls on it"
    )
    sink_backoff_base_s: float = Field(
        default=0.5, alias="GRID_SINK_BACKOFF_BASE_S", description="a sink's first retry delay, doubled at each retry"
    )
    sink_backoff_cap_s: float = Field(
        default=30.0, alias="GRID_SINK_BACKOFF_CAP_S", description="a sink's longest retry delay"
    )
    sink_stall_probe_s: float = Field(
        default=60.0, alias="GRID_SINK_STALL_PROBE_S", description="how often a stalled sink tries its delivery again"
    )
    sink_conflict_window_s: int = Field(
        default=24 * 3600,
        alias="GRID_SINK_CONFLICT_WINDOW_S",
        description="tumbling window in which alike rejections make one Linear conflict",
    )
    sink_conflicts_per_window_max: int = Field(
        default=50,
        ge=1,
        alias="GRID_SINK_CONFLICTS_PER_WINDOW_MAX",
        description="Linear issues opened for conflicts per window; beyond it they fold into one overflow issue",
    )
    sink_linger_s: float = Field(
        default=1.0,
        alias="GRID_SINK_LINGER_S",
        description="a sink flushes its batch once no record arrived for this long…",
    )
    sink_batch_age_max_s: float = Field(
        default=5.0, alias="GRID_SINK_BATCH_AGE_MAX_S", description="…or once the batch's first record is this old"
    )

    # --- Gemini agents
    gemini_api_key: SecretStr | None = Field(
        default=None, alias="GEMINI_API_KEY", description="enables the Gemini strategy; unset: heuristic agents"
    )
    google_api_key: SecretStr | None = Field(
        default=None, alias="GOOGLE_API_KEY", description="the Gemini key when GEMINI_API_KEY is unset"
    )
    gemini_model: str = Field(
        default="gemini-3.8-flash", alias="GRID_GEMINI_MODEL", description="model the Gemini agents ask"
    )
    gemini_base_url: str | None = Field(
        default=None,
        alias="GRID_GEMINI_BASE_URL",
        description="Gemini endpoint; unset: Google's (tests use a stand-in)",
    )
    gemini_timeout_s: float = Field(
        default=20.0, alias="GRID_GEMINI_TIMEOUT_S", description="time limit of one Gemini HTTP attempt"
    )

    # --- the dashboard and its console
    dashboard_user: str = Field(
        default="operator",
        alias="GRID_DASHBOARD_USER",
        description="the console's default operator; the one-time password logs in as it",
    )
    dashboard_idle_timeout_s: float = Field(
        default=900.0,
        alias="GRID_DASHBOARD_IDLE_TIMEOUT_S",
        description="a console session without use ends after this long",
    )
    dashboard_session_max_s: float = Field(
        default=8 * 3600.0,
        alias="GRID_DASHBOARD_SESSION_MAX_S",
        description="a console session ends this long after its login, in use or not",
    )
    mode: str = Field(
        default="development",
        alias="GRID_ENV",
        description="production: console logins only with sealed keys; else also a one-time password",
    )
    dashboard_database_url: str | None = Field(
        default=None,
        alias="GRID_DASHBOARD_DATABASE_URL",
        description="the dashboard's read-only connection; unset: GRID_DATABASE_URL as role grid_reader",
    )
    sinks_database_url_external: str | None = Field(
        default=None,
        alias="GRID_SINKS_DATABASE_URL",
        description="the sinks' connection; unset: GRID_DATABASE_URL as role grid_sinks (their tables only)",
    )
    validator_database_url_external: str | None = Field(
        default=None,
        alias="GRID_VALIDATOR_DATABASE_URL",
        description="the validator's connection; unset: GRID_DATABASE_URL as role grid_validator (append-only)",
    )
    dashboard_port: int = Field(
        default=8501, alias="STREAMLIT_SERVER_PORT", description="port the dashboard listens on (`--port` beats it)"
    )
    dashboard_address: str = Field(
        default="127.0.0.1",
        alias="STREAMLIT_SERVER_ADDRESS",
        description="address the dashboard listens on (`--address` beats it)",
    )

    # --- n8n
    n8n_enabled: bool = Field(
        default=False,
        alias="GRID_N8N",
        description="1: `gridgov infra up` also starts n8n with its workflows (`gridgov n8n up` does it alone)",
    )
    n8n_version: str = Field(
        default="1.123.50",
        alias="GRID_N8N_VERSION",
        description="n8n release installed under GRID_HOME/n8n with npm (1.123.x: the line that runs on Node.js 20)",
    )
    n8n_port: int = Field(
        default=55678,
        alias="GRID_N8N_PORT",
        description="port n8n listens on, on 127.0.0.1; its task runners use the next one",
    )
    n8n_owner_email: str = Field(
        default="owner@grid.example",
        alias="GRID_N8N_OWNER_EMAIL",
        description="login of n8n's owner account; its password is generated into GRID_HOME/credentials/n8n-owner",
    )
    n8n_digest_cron: str = Field(
        default="0 0 6 * * *",
        alias="GRID_N8N_DIGEST_CRON",
        description="when n8n posts the digest of the day's conflicts to Linear (cron with seconds, UTC)",
    )
    n8n_start_timeout_s: float = Field(
        default=180.0, alias="GRID_N8N_START_TIMEOUT_S", description="how long `gridgov n8n up` waits for n8n to answer"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No secrets directory: secrets come from the environment or the settings file like the rest.
        file_settings = DotEnvSettingsSource(settings_cls, env_file=settings_file())
        return tuple(_BlankMeansDefault(s) for s in (init_settings, env_settings, file_settings))

    @property
    def kafka_bootstrap(self) -> str:
        """The external Kafka, else every local broker: a client must still find the cluster when one is down."""
        local = ",".join(f"127.0.0.1:{port}" for port, _ in self.kafka_node_ports)
        return self.kafka_bootstrap_external or local

    @property
    def kafka_node_ports(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each local broker, node 1 first: the defaults interleave."""
        step = KAFKA_NODE_PORT_STEP
        return [(self.kafka_port + step * n, self.kafka_controller_port + step * n) for n in range(self.kafka_brokers)]

    def kafka(self, principal: Principal) -> KafkaAccess:
        """How to reach the broker as ``principal`` (see ``core.kafka_access``)."""
        own = None
        if self.kafka_username:
            own = (self.kafka_username, revealed(self.kafka_password) or "")
        return access(self.kafka_bootstrap, self.home, principal, self.kafka_sasl, own)

    @property
    def database_url(self) -> str:
        """The owner's URL: migrations and operators' tools, never a service."""
        if self.database_url_external:
            return self.database_url_external
        local = f"postgresql://127.0.0.1:{self.pg_port}/{self.pg_database}"
        return pg_access.with_role(local, pg_access.OWNER, pg_access.stored_password(self.home, pg_access.OWNER))

    @property
    def validator_database_url(self) -> str:
        """The validator writes as ``grid_validator``, which may append to the ledger and nothing more."""
        return self.validator_database_url_external or self.role_database_url(pg_access.VALIDATOR)

    @property
    def sinks_database_url(self) -> str:
        return self.sinks_database_url_external or self.role_database_url(pg_access.SINKS)

    @property
    def reader_database_url(self) -> str:
        return self.dashboard_database_url or self.role_database_url(pg_access.READER)

    def role_database_url(self, role: str) -> str:
        """The database of ``database_url`` as ``role``; on the local cluster with its generated password
        (which is sent nowhere else)."""
        parts = urlsplit(self.database_url)
        local = parts.hostname == "127.0.0.1" and parts.port == self.pg_port
        password = pg_access.stored_password(self.home, role) if local else None
        return pg_access.with_role(self.database_url, role, password)

    @property
    def n8n_url(self) -> str:
        """The local n8n (bound to localhost only)."""
        return f"http://127.0.0.1:{self.n8n_port}"

    @property
    def gemini_key(self) -> SecretStr | None:
        return self.gemini_api_key or self.google_api_key

    @property
    def production(self) -> bool:
        return self.mode.lower() == "production"

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``proposals``."""
        return f"{self.topic_prefix}.{name}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (by field name, validated); None unsets an optional setting."""
        unknown = changes.keys() - type(self).model_fields.keys()
        if unknown:
            raise TypeError(f"no such settings: {sorted(unknown)}")
        # Every field is given, so neither the environment nor a file can change the copy.
        return type(self)(**{**self.model_dump(), **changes})

    def as_env(self) -> dict[str, str]:
        """Every setting as the variable a child process reads it from, secrets in clear.

        All of them, not only those that differ from the defaults: the child then loads these same
        settings whatever environment or settings file it inherits. Unset ones are empty strings,
        which mean unset.
        """
        return {v.name: env_text(getattr(self, v.field)) for v in variables()}


class _BlankMeansDefault(PydanticBaseSettingsSource):
    """A source whose blank values stand for the defaults, so they hide lower sources too; others stripped.

    Hiding is what lets ``as_env()`` unset a value for a child: an empty variable must not let the
    child's settings file decide instead.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        defaults = {info.alias or name: info.default for name, info in self.settings_cls.model_fields.items()}
        return {k: (v.strip() or defaults.get(k)) if isinstance(v, str) else v for k, v in self._inner().items()}


def _blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


@dataclass(frozen=True)
class Variable:
    name: str  # the environment variable
    field: str  # the Settings attribute
    default: Any
    meaning: str


def variables() -> list[Variable]:
    """Every setting, in the order of the class."""
    return [_variable(name, info) for name, info in Settings.model_fields.items()]


def _variable(name: str, info: FieldInfo) -> Variable:
    assert info.alias is not None and info.description is not None, f"{name} needs a variable and a meaning"
    return Variable(info.alias, name, info.default, info.description)


def env_text(value: object) -> str:
    """A value as an environment variable spells it: unset is empty, booleans 1 or 0."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def revealed(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def settings_file() -> Path:
    """GRID_ENV_FILE, else grid.env in GRID_HOME, from the environment alone: the file cannot say where it is."""
    found = _BlankMeansDefault(EnvSettingsSource(Settings))()
    if found.get("GRID_ENV_FILE"):
        return Path(found["GRID_ENV_FILE"])
    return Path(found.get("GRID_HOME") or Settings.model_fields["home"].default) / SETTINGS_FILE_NAME


def load() -> Settings:
    return Settings()


def origins() -> dict[str, str]:
    """Where each setting's value comes from, by variable name: environment, file or default."""
    in_env = EnvSettingsSource(Settings)()
    in_file = DotEnvSettingsSource(Settings, env_file=settings_file())()
    return {v.name: _origin(in_env.get(v.name), in_file.get(v.name)) for v in variables()}


def _origin(in_env: object, in_file: object) -> str:
    if in_env is not None:
        return DEFAULT if _blank(in_env) else ENVIRONMENT  # a blank variable unsets: it hides the file
    return FILE if in_file is not None and not _blank(in_file) else DEFAULT
