"""``gridgov sinks [run|status]``: deliver rejections to Linear and alerts to Discord, or show the backlog."""

from __future__ import annotations

import argparse
import json
import sys

import psycopg
from prometheus_client import start_http_server

from core import config
from core.pg_access import redacted
from core.tables import format_table
from sinks import runner
from sinks.settings import SinkSettings
from sinks.store import SINKS, DeliveryStore, connect

STATUS_COLUMNS = (
    ("SINK", "sink"),
    ("MODE", "mode"),
    ("BACKLOG", "backlog"),
    ("OUTBOX", "outbox"),
    ("STALLED", "stalled"),
    ("DELIVERED", "delivered"),
    ("OUTBOX FILE", "outbox_file"),
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("sinks", help="deliver rejections to Linear and critical alerts to Discord")
    parser.add_argument("action", nargs="?", default="run", choices=("run", "status"))
    parser.add_argument("--once", action="store_true", help="deliver what is on the topics, then exit")
    parser.add_argument("--instance-id", help="static consumer-group member id (default: prefix and host name)")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    parser.add_argument("--json", action="store_true", help="status: machine-readable output")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    sink_settings = SinkSettings.from_settings(settings)
    if args.action == "status":
        return show_status(settings, sink_settings, args.json)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr="127.0.0.1")
    return runner.run(settings, sink_settings, args.instance_id or runner.default_instance_id(settings), args.once)


def show_status(settings: config.Settings, sink_settings: SinkSettings, as_json: bool) -> int:
    online = {"linear": sink_settings.linear_online, "discord": sink_settings.discord_online}
    url = settings.sinks_database_url
    try:
        with connect(url) as conn:
            summaries = [DeliveryStore(conn, sink).summary() for sink in SINKS]
    except psycopg.errors.UndefinedTable:
        print(f"sinks status: {redacted(url)} has no sink tables; run `gridgov migrate`", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"sinks status: {redacted(url)}: {exc}", file=sys.stderr)
        return 1
    rows = [
        {
            "sink": s.sink,
            "mode": "online" if online[s.sink] else "offline (outbox)",
            "backlog": s.pending,
            "outbox": s.offline_pending,
            "stalled": s.stalled,
            "delivered": s.delivered,
            "outbox_file": str(settings.home / "outbox" / f"{s.sink}.jsonl"),
            "last_error": s.last_error,
        }
        for s in summaries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table([h for h, _ in STATUS_COLUMNS], [[row[key] for _, key in STATUS_COLUMNS] for row in rows]))
    for row in rows:
        if row["last_error"]:
            print(f"{row['sink']}: stalled on: {row['last_error']}")
    return 0
