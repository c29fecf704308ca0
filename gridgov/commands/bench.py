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
    parser.add_argument("--runs", type=int, default=1, help="whole runs; with more than one, each row's median too")
    parser.add_argument(
        "--memory-count",
        type=int,
        default=0,
        help="after the runs, the validator alone over this many proposals, for its peak memory (0: not)",
    )
    parser.add_argument(
        "--window-s",
        type=float,
        default=bench.LATENCY_WINDOW_S,
        help="seconds of fixed offered load the latency percentiles are taken over, after the warm-up",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SHOW fsync").fetchone()
    fsync = row[0] if row else "?"
    prefixes_kept: list[str] = []  # deleted once everything is measured
    try:
        runs = []
        for i in range(args.runs):
            runs.append(bench.run(settings, args.count, prefixes_kept, args.window_s))
            if args.runs > 1:
                print(f"run {i + 1} of {args.runs}\n{bench.render_run(runs[-1], fsync)}\n", flush=True)
        memory = [bench.memory_row(settings, args.memory_count, prefixes_kept)] if args.memory_count else []
    except bench.BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.delete_scratch_topics(settings, prefixes_kept)
    if args.runs > 1:
        print(f"median of {args.runs} runs")
    result = bench.median_run(runs) if args.runs > 1 else runs[0]
    print(bench.render_run(result, fsync, memory))
    return 0
