"""The migration runner against a real PostgreSQL: once each, in order, checksummed, safe in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from connectors.migrate import MigrationError, apply_migrations


def write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(body)


def applied_rows(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    write(tmp_path, "0001_accounts.sql", "CREATE TABLE accounts (id int PRIMARY KEY);")
    write(tmp_path, "0002_seed.sql", "INSERT INTO accounts VALUES (1);\nINSERT INTO accounts VALUES (2);")
    return tmp_path


def test_applies_in_order_once(empty_database: str, migrations: Path) -> None:
    assert apply_migrations(empty_database, migrations) == ["0001_accounts", "0002_seed"]
    assert apply_migrations(empty_database, migrations) == []
    assert applied_rows(empty_database) == [(1, "0001_accounts"), (2, "0002_seed")]
    write(migrations, "0003_more.sql", "INSERT INTO accounts VALUES (3);")
    assert apply_migrations(empty_database, migrations) == ["0003_more"]
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (3,)


def test_changed_checksum_is_an_error(empty_database: str, migrations: Path) -> None:
    apply_migrations(empty_database, migrations)
    write(migrations, "0001_accounts.sql", "CREATE TABLE accounts (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="0001_accounts"):
        apply_migrations(empty_database, migrations)


def test_failing_file_leaves_nothing_behind(empty_database: str, migrations: Path) -> None:
    write(migrations, "0003_broken.sql", "CREATE TABLE half (id int);\nSELEC 1;")
    with pytest.raises(psycopg.errors.SyntaxError):
        apply_migrations(empty_database, migrations)
    assert [v for v, _ in applied_rows(empty_database)] == [1, 2]
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_badly_named_file_is_an_error(empty_database: str, tmp_path: Path) -> None:
    write(tmp_path, "1_init.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name"):
        apply_migrations(empty_database, tmp_path)


def test_concurrent_runners_apply_each_file_once(empty_database: str, tmp_path: Path) -> None:
    # the sleep keeps the first runner inside its transaction while the others arrive
    write(tmp_path, "0001_slow.sql", "SELECT pg_sleep(0.5);\nCREATE TABLE runs (n int);\nINSERT INTO runs VALUES (1);")
    write(tmp_path, "0002_next.sql", "INSERT INTO runs VALUES (2);")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: apply_migrations(empty_database, tmp_path), range(4)))
    assert sorted(name for names in results for name in names) == ["0001_slow", "0002_next"]
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT n FROM runs ORDER BY n").fetchall() == [(1,), (2,)]


def test_project_migrations_are_applied_to_fresh_database(fresh_database: str) -> None:
    assert apply_migrations(fresh_database) == []
