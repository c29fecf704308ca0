"""``gridgov topics``: create the grid's topics if missing and show their partitions and retention."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from confluent_kafka import KafkaException

from connectors import kafka_admin
from core import config
from core.tables import format_table

DAY_MS = 24 * 3600 * 1000


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="create the grid's Kafka topics (idempotent) and show them")
    parser.add_argument("--show-only", action="store_true", help="do not create or alter anything")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=handle)


def retention_text(retention_ms: int) -> str:
    if retention_ms < 0:
        return f"{retention_ms} (forever)"
    return f"{retention_ms / DAY_MS:g} days" if retention_ms % DAY_MS == 0 else f"{retention_ms} ms"


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    try:
        action = kafka_admin.describe_topics if args.show_only else kafka_admin.ensure_topics
        infos = action(settings)
    except (KafkaException, kafka_admin.TopicMismatchError, TimeoutError) as exc:
        print(f"topics on {settings.kafka_bootstrap} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return 0
    rows = [(i.name, i.partitions, retention_text(i.retention_ms), i.max_message_bytes, i.action) for i in infos]
    print(f"Kafka {settings.kafka_bootstrap}")
    print(format_table(("TOPIC", "PARTITIONS", "RETENTION", "MAX MESSAGE BYTES", "ACTION"), rows))
    return 0
