"""``gridgov``: every entry point of the Grid Governance Engine."""

from __future__ import annotations

import argparse
import importlib
import sys

from gridgov import logs

# Each module under gridgov/commands registers one subcommand; a missing optional one is skipped.
COMMANDS = (
    "infra",
    "topics",
    "migrate",
    "validator",
    "propose",
    "verify",
    "bench",
    "simulate",
    "policy",
    "breaker",
    "participants",
    "sinks",
    "rehydrate",
    "replay",
    "dashboard",
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="gridgov",
        description="Grid Governance Engine: agents propose, code-as-law decides, a hash-chained ledger records.",
    )
    root.add_argument("--log-level", help="DEBUG, INFO (default, or GRID_LOG_LEVEL), WARNING")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gridgov.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gridgov.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_level)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
