"""``gridgov participants list|add|rekey|suspend``: the registry, changed only by signed operator commands.

``add`` and ``rekey`` of a participant or the meter run on the validator's host: they derive the
agent's key, write its key file (``GRID_HOME/keys``, 0600) for the agent's process, and register only
the fingerprint. An operator is added or rekeyed by public key.
"""

from __future__ import annotations

import argparse

import psycopg

from connectors import governance
from connectors.readmodel.ledger import key_generation, participants
from core import agent_keys, config
from core.config import Settings
from core.identities import operator_public_key
from core.key_secret import key_secret
from gridgov.commands.operators import cli_signer


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("participants", help="list, add, rekey or suspend participants (signed command)")
    parser.add_argument("action", choices=("list", "add", "rekey", "suspend"))
    parser.add_argument("agent", nargs="?", help="the agent to add, rekey or suspend")
    parser.add_argument("--role", choices=("participant", "meter", "operator"), default="participant")
    parser.add_argument(
        "--public-key", help="an operator's Ed25519 public key (default: GRID_HOME/operators/AGENT.pub)"
    )
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
            "role": args.role,
            **_key_fields(settings, args, generation=0),
            "accounts": args.account or [f"{args.agent}:main"],
            "kind": args.kind,
            "emits_carbon": args.emits_carbon,
            "critical_load": args.critical_load,
        }
        body = {"kind": "participant_add", "participant": participant}
    elif args.action == "rekey":
        with psycopg.connect(settings.database_url) as conn:
            generation = key_generation(conn, args.agent) + 1
        body = {"kind": "participant_rekey", "agent": args.agent, "reason": args.reason}
        body |= _key_fields(settings, args, generation)
    else:
        body = {"kind": "participant_suspend", "agent": args.agent, "reason": args.reason}
    return governance.send_and_report(settings, body, wait=not args.no_wait, signer=cli_signer(settings))


def _key_fields(settings: Settings, args: argparse.Namespace, generation: int) -> dict[str, str]:
    """An operator's public key, or the fingerprint of the agent's key ``generation``, whose key file
    is written for the agent's process."""
    if args.role == "operator":
        return {"public_key": args.public_key or operator_public_key(settings.home, args.agent)}
    key = agent_keys.issue(key_secret(settings), args.agent, generation)
    path = agent_keys.default_path(settings.home, args.agent, generation)
    agent_keys.write(path, key)
    print(f"key file for {args.agent} (generation {generation}): {path}")
    return {"key_fingerprint": key.fingerprint}
