"""``gridgov participants list|add|suspend``: the registry, changed only by signed operator commands."""

from __future__ import annotations

import argparse

import psycopg

from connectors import governance
from connectors.readmodel.ledger import participants
from core import config
from core.key_secret import key_secret
from schemas.codec import key_fingerprint
from schemas.keys import derive_key


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("participants", help="list, add or suspend participants (signed command)")
    parser.add_argument("action", choices=("list", "add", "suspend"))
    parser.add_argument("agent", nargs="?", help="the agent to add or suspend")
    parser.add_argument("--kind", default="generic", help="participant type for `add`, e.g. solar_farm")
    parser.add_argument("--account", action="append", help="account(s) for `add` (default AGENT:main)")
    parser.add_argument("--emits-carbon", action="store_true")
    parser.add_argument("--critical-load", action="store_true")
    parser.add_argument("--reason", default="", help="recorded in the ledger")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the validator's decision")
    parser.set_defaults(func=handle)


def list_participants(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        rows = [tuple(p.values()) for p in participants(conn)]
    print(f"{'AGENT':20} {'ROLE':12} {'KIND':16} {'ACCOUNTS':28} FLAGS")
    for agent, role, kind, accounts, carbon, critical, suspended in rows:
        flags = [f for f, on in (("emits-carbon", carbon), ("critical", critical), ("SUSPENDED", suspended)) if on]
        print(f"{agent:20} {role:12} {kind:16} {','.join(accounts):28} {' '.join(flags)}")
    return 0


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.action == "list":
        return list_participants(settings.database_url)
    if not args.agent:
        raise SystemExit(f"participants {args.action} needs an AGENT")
    if args.action == "add":
        participant = {
            "agent": args.agent,
            "role": "participant",
            "key_fingerprint": key_fingerprint(derive_key(key_secret(settings), args.agent)),
            "accounts": args.account or [f"{args.agent}:main"],
            "kind": args.kind,
            "emits_carbon": args.emits_carbon,
            "critical_load": args.critical_load,
        }
        body = {"kind": "participant_add", "participant": participant}
    else:
        body = {"kind": "participant_suspend", "agent": args.agent, "reason": args.reason}
    return governance.send_and_report(settings, body, wait=not args.no_wait)
