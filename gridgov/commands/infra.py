"""``gridgov infra up|down|status``: the local Kafka broker and PostgreSQL cluster."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core import config
from core.tables import format_table
from gridgov import infra

STEP_LABELS = {
    "fetch_s": "fetch jars",
    "format_s": "format",
    "secure_s": "secure in place",
    "users_s": "SCRAM users",
    "install_s": "apt install",
    "initdb_s": "initdb",
    "start_s": "start→ready",
    "createdb_s": "createdb",
    "ready_s": "ready",
    "npm_install_s": "npm install",
    "provision_s": "owner, key, workflows",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("infra", help="start, stop or show the local Kafka and PostgreSQL")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--only", choices=infra.SERVICES, help="act on one service only")
    parser.add_argument(
        "--brokers",
        type=int,
        choices=range(1, config.KAFKA_BROKERS_MAX + 1),
        metavar="N",
        help="up: a local Kafka cluster of N brokers (beats GRID_KAFKA_BROKERS; set that too, so that every "
        "client lists them all); status and down find the brokers that were started",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=handle)


def address(name: str, info: dict[str, Any]) -> str:
    return str(info.get("bootstrap") if name == "kafka" else info.get("url"))


def timings_text(timings_s: dict[str, float]) -> str:
    return ", ".join(f"{STEP_LABELS.get(k, k)} {v:.1f} s" for k, v in timings_s.items() if v > 0) or "-"


def print_up(result: dict[str, dict[str, Any]]) -> None:
    rows = [(n, i["state"], address(n, i), timings_text(i["timings_s"])) for n, i in result.items()]
    print(format_table(("SERVICE", "STATE", "ADDRESS", "TOOK"), rows))


def print_status(result: dict[str, dict[str, Any]]) -> None:
    rows = []
    for name, info in result.items():
        state = info["state"] if info["state"] != "external" else f"external ({_reachable(info)})"
        version = info.get("version") or info.get("server_version")
        rows.append((name, state, info.get("pid"), address(name, info), version))
        # a cluster's brokers one by one: which is down, and its pid to find its log
        nodes = info.get("nodes", [])
        if len(nodes) > 1:
            rows += [(f"  broker {n['node']}", n["state"], n["pid"], n["bootstrap"], "") for n in nodes]
    print(format_table(("SERVICE", "STATE", "PID", "ADDRESS", "VERSION"), rows))


def _reachable(info: dict[str, Any]) -> str:
    return "reachable" if info.get("reachable") else "NOT reachable"


def healthy(info: dict[str, Any]) -> bool:
    return info["state"] == "running" or (info["state"] == "external" and bool(info.get("reachable")))


def handle(args: argparse.Namespace) -> int:
    services = [args.only] if args.only else None  # all, n8n too when GRID_N8N is set
    settings = config.load()
    if args.brokers is not None:
        settings = settings.replace(kafka_brokers=args.brokers)
    try:
        result: dict[str, Any] = getattr(infra, args.action)(services, settings=settings)
    except infra.InfraError as exc:
        print(f"infra {args.action} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "up":
        print_up(result)
    elif args.action == "down":
        print("\n".join(f"{name}: {outcome}" for name, outcome in result.items()))
    else:
        print_status(result)
    # status doubles as a health check for scripts: non-zero when something asked for is not answering
    return 0 if args.action != "status" or all(healthy(i) for i in result.values()) else 1
