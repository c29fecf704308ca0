"""``gridgov verify``: walk the hash chain, check conservation, compare world_state with the fold."""

from __future__ import annotations

import argparse

from connectors.readmodel.ledger import audit_database
from core import config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("verify", help="audit the ledger; non-zero exit on any mismatch")
    parser.add_argument("--database-url", help="default: GRID_DATABASE_URL or the local cluster")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    report = audit_database(args.database_url or config.load().database_url)
    print(f"ledger head: seq {report.head_seq} hash {report.head_hash.hex()}")
    print(f"entries checked: {report.entries}")
    for p in report.problems:
        print(f"MISMATCH {p.where}: {p.reason} — {p.detail}")
    print(
        "verified: chain, conservation, offsets and world_state agree"
        if report.ok
        else f"{len(report.problems)} problems"
    )
    return 0 if report.ok else 1
