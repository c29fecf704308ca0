"""``gridgov n8n install|up|down|status``: n8n and the incident workflows of ``connectors/n8n``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core import config
from core.process import InfraError
from core.tables import format_table
from gridgov.infra import n8n

STEP_LABELS = {"npm_install_s": "npm install", "start_s": "start→ready", "provision_s": "owner, key, workflows"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("n8n", help="start, stop or show n8n and its incident workflows")
    parser.add_argument(
        "action",
        choices=("install", "up", "down", "status"),
        help="install: npm install only (once, kept under GRID_HOME); up: install, start, provision, import",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=handle)


def timings_text(timings_s: dict[str, float]) -> str:
    return ", ".join(f"{STEP_LABELS.get(k, k)} {v:.1f} s" for k, v in timings_s.items() if v > 0) or "-"


def print_up(result: dict[str, Any]) -> None:
    print(f"n8n {result['state']} (pid {result['pid']}) on {result['url']}; took {timings_text(result['timings_s'])}")
    rows = [(w["file"], w["name"], w["id"], w["state"]) for w in result["workflows"]]
    print(format_table(("FILE", "WORKFLOW", "ID", "STATE"), rows))


def print_status(result: dict[str, Any]) -> None:
    print(f"n8n {result['state']} (pid {result['pid']}) on {result['url']}, version {result['version']}")
    if result["state"] != "running":
        return
    rows = [(w["name"], w["id"], "active" if w["active"] else "inactive") for w in result["workflows"]]
    print(format_table(("WORKFLOW", "ID", "STATE"), rows))
    executions = ", ".join(f"{count} {status}" for status, count in sorted(result["executions"].items()))
    print(f"executions: {executions or 'none'}")


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    try:
        result: Any = getattr(n8n, args.action)(settings)
    except InfraError as exc:
        print(f"n8n {args.action} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "install":
        print(
            f"n8n {settings.n8n_version} in {n8n.app_dir(settings)}: "
            + (f"installed in {result:.0f} s" if result else "present")
        )
    elif args.action == "up":
        print_up(result)
    elif args.action == "down":
        print(f"n8n: {result}")
    else:
        print_status(result)
    return 0 if args.action != "status" or result["state"] == "running" else 1
