"""Configuration from environment variables, with defaults that work on a fresh machine.

Every setting has one name (``GRID_*``) and one default here; nothing else in the project reads
the environment for these, so ``gridgov infra status`` can show exactly what is in force.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_port: int
    kafka_controller_port: int
    kafka_heap_mb: int
    kafka_version: str
    pg_port: int
    pg_database: str
    topic_prefix: str
    kafka_bootstrap_external: str | None
    database_url_external: str | None

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_external or f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        if self.database_url_external:
            return self.database_url_external
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.pg_database}"

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``proposals``."""
        return f"{self.topic_prefix}.{name}"


def load() -> Settings:
    return Settings(
        home=Path(_env("GRID_HOME", str(REPO_ROOT / ".grid"))),
        kafka_port=int(_env("GRID_KAFKA_PORT", "59092")),
        kafka_controller_port=int(_env("GRID_KAFKA_CONTROLLER_PORT", "59093")),
        kafka_heap_mb=int(_env("GRID_KAFKA_HEAP_MB", "1024")),
        kafka_version=_env("GRID_KAFKA_VERSION", "4.1.1"),
        pg_port=int(_env("GRID_PG_PORT", "55432")),
        pg_database=_env("GRID_PG_DATABASE", "grid"),
        topic_prefix=_env("GRID_TOPIC_PREFIX", "grid"),
        kafka_bootstrap_external=os.environ.get("GRID_KAFKA_BOOTSTRAP") or None,
        database_url_external=os.environ.get("GRID_DATABASE_URL") or None,
    )
