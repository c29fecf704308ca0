"""``gridgov breaker status|trip|resume --reason ...``: the circuit breaker, by signed operator command."""

from __future__ import annotations

import argparse

import psycopg

from connectors import governance
from connectors.readmodel.ledger import grid_status
from core import config
from gridgov.commands.operators import cli_signer


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("breaker", help="show, trip or resume the circuit breaker (signed command)")
    parser.add_argument("action", choices=("status", "trip", "resume"))
    parser.add_argument("--reason", help="required for trip and resume; recorded in the ledger")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the validator's decision")
    parser.set_defaults(func=handle)


def status(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = grid_status(conn)
    if row is None:
        print("breaker: no ledger yet")
        return 0
    is_open, reason = row["breaker_open"], row["breaker_reason"]
    print(f"breaker {'OPEN' if is_open else 'closed'} at tick {row['tick']}" + (f": {reason}" if is_open else ""))
    for key, value in row["telemetry"].items():
        print(f"  {key:20} {value}")
    return 0


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.action == "status":
        return status(settings.database_url)
    if not args.reason:
        raise SystemExit(f"breaker {args.action} needs --reason")
    trip_seq = None
    if args.action == "resume":
        with psycopg.connect(settings.database_url) as conn:
            grid = grid_status(conn)
        if grid is None or not grid["breaker_open"]:
            raise SystemExit("the breaker is not open: nothing to resume")
        trip_seq = grid["breaker_trip_seq"]  # the resume names the trip it closes, and no later one
    body = governance.breaker(args.action, args.reason, trip_seq)
    return governance.send_and_report(settings, body, wait=not args.no_wait, signer=cli_signer(settings))
