"""``gridgov verify``: walk the hash chain, check conservation, re-authenticate and re-decide every entry
with the law, compare world_state with the fold."""

from __future__ import annotations

import argparse

from connectors.readmodel.ledger import audit_database
from core import config
from core.key_secret import key_secret
from core.keyring import validator_keyring


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("verify", help="audit the ledger; non-zero exit on any mismatch")
    parser.add_argument("--database-url", help="default: GRID_DATABASE_URL or the local cluster")
    parser.add_argument(
        "--chain-only",
        action="store_true",
        help="check hashes only, without the validator's secret (no re-authentication, no re-decision)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    keys = None if args.chain_only else validator_keyring(settings, key_secret(settings))
    report = audit_database(args.database_url or settings.database_url, keys)
    print(f"ledger head: seq {report.head_seq} hash {report.head_hash.hex()}")
    print(f"entries checked: {report.entries}")
    for p in report.problems:
        print(f"MISMATCH {p.where}: {p.reason} — {p.detail}")
    print(
        f"verified: chain, conservation, offsets{'' if keys is None else ', signatures, the law’s decisions'}"
        " and world_state agree"
        if report.ok
        else f"{len(report.problems)} problems"
    )
    return 0 if report.ok else 1
