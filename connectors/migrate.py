"""A minimal SQL migration runner: ``migrations/NNNN_name.sql`` applied in order, each exactly once.

Why our own: the maintained tools either need a server or runtime of their own (Flyway, Liquibase: a JVM
and config files; sqitch: Perl), or an ORM and its config (Alembic: SQLAlchemy plus env.py), for what is
here a directory of plain SQL files. This is the whole mechanism:

- each file runs in its own transaction together with its row in ``schema_migrations``, so a failing
  file leaves nothing behind and is retried next time;
- ``pg_advisory_xact_lock`` serialises concurrent runners (several services start at once), and each
  runner re-checks under the lock, so none applies a file twice;
- an applied file whose checksum changed is an error: write a new migration instead of editing one.
  (Files cannot use statements that refuse a transaction, such as CREATE INDEX CONCURRENTLY.)
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_PATTERN = re.compile(r"^(\d{4})_(\w+)\.sql$")
# any constant shared by all runners; this one spells "gridmigr" in ASCII
LOCK_KEY = 0x677269646D696772
CONCURRENT_ROLE_ATTEMPTS_MAX = 5
CONCURRENT_ROLE_RETRY_S = 0.1
CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str


def discover(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        body = path.read_bytes()
        migrations.append(Migration(int(match[1]), path.stem, body.decode(), hashlib.sha256(body).hexdigest()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number in {directory}")
    return migrations


def _lock_and_check(conn: psycopg.Connection, migration: Migration) -> bool:
    """Under the lock: True if ``migration`` is already applied; raise if it was applied with other content."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    conn.execute(CREATE_TABLE)
    row = conn.execute("SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone()
    if row is not None and row[0] != migration.checksum:
        raise MigrationError(f"{migration.name} was changed after it was applied (checksum differs)")
    return row is not None


def apply_migrations(database_url: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations in ``directory`` (default: connectors/migrations); return their names."""
    applied = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for migration in discover(directory or MIGRATIONS_DIR):
            if _apply(conn, migration):
                logger.info("applied migration %s", migration.name)
                applied.append(migration.name)
    return applied


def _apply(conn: psycopg.Connection, migration: Migration) -> bool:
    """Apply one migration in one transaction; False if it was applied already.

    Retried, bounded, when another database of the same cluster alters a cluster-wide role at the same
    moment ("tuple concurrently updated"): the advisory lock is per database, roles are not. The
    transaction rolled back, so trying again is safe.
    """
    for attempt in range(1, CONCURRENT_ROLE_ATTEMPTS_MAX + 1):
        try:
            with conn.transaction():
                if _lock_and_check(conn, migration):
                    return False
                conn.execute(migration.sql.encode())  # bytes: no parameters, so '%' in the SQL stays literal
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            return True
        except psycopg.errors.InternalError_ as exc:
            if "tuple concurrently updated" not in str(exc) or attempt == CONCURRENT_ROLE_ATTEMPTS_MAX:
                raise
            time.sleep(CONCURRENT_ROLE_RETRY_S * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")
