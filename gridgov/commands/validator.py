"""``gridgov validator``: run the ordered consumer that decides proposals into the ledger."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from prometheus_client import start_http_server

from connectors.kafka_admin import ensure_topics
from connectors.migrate import apply_migrations
from core import config
from core.key_secret import key_secret
from streams.validator import GROUP_ID_DEFAULT, ValidatorHalted, open_validator


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("validator", help="decide proposals from Kafka into the Postgres ledger")
    parser.add_argument("--group", default=GROUP_ID_DEFAULT, help="consumer group / position name")
    parser.add_argument("--metrics-port", type=int, default=9464, help="Prometheus port (0 = off)")
    parser.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply pending migrations first, as the owner (GRID_DATABASE_URL); --no-migrate where the "
        "validator holds only its own role's URL and migrations ran elsewhere (compose's init)",
    )
    parser.add_argument("--idle-exit-s", type=float, help="exit after this many seconds with nothing to decide")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.migrate:
        apply_migrations(settings.database_url)
    ensure_topics(settings)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    validator = open_validator(settings, key_secret(settings), group_id=args.group)
    try:
        validator.run(stop, idle_exit_s=args.idle_exit_s)
    except ValidatorHalted as exc:
        print(f"validator halted (exit {exc.exit_status}): {exc}", file=sys.stderr)
        return exc.exit_status
    return 0
