"""``gridgov bench``: validator throughput and latency, rehydrate and replay rates, against the naive
baseline and the machine's ceilings measured in the same run."""

from __future__ import annotations

import argparse
import sys

import psycopg

from core import config
from streams import bench


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure proposals/s, produce→commit latency, rehydrate and replay rates (make bench)"
    )
    parser.add_argument("--count", type=int, default=200_000, help="proposals for the throughput rows")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SHOW fsync").fetchone()
    try:
        rows = bench.run(settings, args.count)
    except bench.BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print(bench.render(rows, fsync=row[0] if row else "?"))
    return 0
