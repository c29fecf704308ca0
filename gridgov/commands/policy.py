"""``gridgov policy show|set key=value ...``: read the policy in force, or change it by signed command."""

from __future__ import annotations

import argparse

import psycopg

from connectors import governance
from connectors.readmodel.ledger import grid_status
from core import config
from gridgov.commands.operators import cli_signer
from law.policy import DEFAULT_POLICY, POLICY_BOUNDS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="show the policy in force or set parameters (signed command)")
    parser.add_argument("action", choices=("show", "set"))
    parser.add_argument("params", nargs="*", metavar="key=value", help="integer parameters for `set`")
    parser.add_argument("--reason", default="", help="why, recorded in the ledger")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the validator's decision")
    parser.set_defaults(func=handle)


def parse_params(pairs: list[str]) -> dict[str, int]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            params[key.strip()] = int(value)
        except ValueError:
            raise SystemExit(f"{key}: policy values are integers, got {value!r}") from None
    return params


def show(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        status = grid_status(conn)
    version, policy = (status["policy_version"], status["policy"]) if status else (0, DEFAULT_POLICY)
    print(f"policy version {version}")
    for key in sorted(policy):
        low, high = POLICY_BOUNDS.get(key, (None, None))
        print(f"  {key:32} {policy[key]:>16}   [{low}, {high}]")
    return 0


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.action == "show":
        return show(settings.database_url)
    params = parse_params(args.params)
    if not params:
        raise SystemExit("policy set needs at least one key=value")
    return governance.send_and_report(
        settings, governance.policy_set(params, args.reason), wait=not args.no_wait, signer=cli_signer(settings)
    )
