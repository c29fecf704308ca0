"""``gridgov bench``: validator throughput and latency against its baseline and the machine's ceiling."""

from __future__ import annotations

import argparse

import psycopg

from core import config
from streams import bench


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("bench", help="measure proposals/s and produce→commit latency (make bench)")
    parser.add_argument("--count", type=int, default=200_000, help="proposals for the throughput rows")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SHOW fsync").fetchone()
    print(bench.render(bench.run(settings, args.count), fsync=row[0] if row else "?"))
    return 0
