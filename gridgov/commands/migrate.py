"""``gridgov migrate``: apply the pending SQL migrations in connectors/migrations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from connectors.migrate import MigrationError, apply_migrations
from core import config
from core.pg_access import redacted


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("migrate", help="apply pending database migrations (idempotent)")
    parser.add_argument("--database-url", help="default: GRID_DATABASE_URL or the local cluster")
    parser.add_argument("--dir", type=Path, help="migrations directory (default: connectors/migrations)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    url = args.database_url or config.load().database_url
    try:
        applied = apply_migrations(url, args.dir)
    except (MigrationError, psycopg.Error) as exc:
        print(f"migrate failed on {redacted(url)}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"applied {name}" for name in applied) if applied else f"{redacted(url)}: up to date")
    return 0
