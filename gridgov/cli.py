"""``gridgov``: every entry point of the Grid Governance Engine."""

from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError

from core import config
from gridgov import logs

# Each module under gridgov/commands registers one subcommand; a missing optional one is skipped.
COMMANDS = (
    "config",
    "infra",
    "topics",
    "migrate",
    "validator",
    "propose",
    "verify",
    "bench",
    "simulate",
    "compare",
    "policy",
    "breaker",
    "participants",
    "operators",
    "keys",
    "sinks",
    "rehydrate",
    "replay",
    "dashboard",
    "n8n",
    "up",  # up, down and status: the live grid
    "agent",
    "meter",
    "soak",
)


# Subcommands registered by a module of another name; every other subcommand is its module's name.
MODULE_OF = {"down": "up", "status": "up", "live-keys": "up"}


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: every command's, or only module ``only``'s (a service starts faster without
    importing every command's dependencies, e.g. google-genai for a validator)."""
    root = argparse.ArgumentParser(
        prog="gridgov",
        description="Grid Governance Engine: agents propose, code-as-law decides, a hash-chained ledger records.",
    )
    root.add_argument("--log-level", help="DEBUG, INFO (default, or GRID_LOG_LEVEL), WARNING")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"gridgov.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gridgov.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return root


def command_module(argv: list[str]) -> str | None:
    """The module of the subcommand ``argv`` names, or None (no command, help, or an unknown name)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            module = MODULE_OF.get(word, word)
            return module if module in COMMANDS else None
        elif not word.startswith("--log-level="):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(command_module(argv)).parse_args(argv)
    # Checked before any command runs, so a bad value is reported as such, not as a traceback later.
    try:
        settings = config.load()
    except ValidationError as exc:
        print(f"gridgov: invalid settings:\n{settings_problems(exc)}", file=sys.stderr)
        return 2
    logs.setup(args.log_level or settings.log_level)
    return int(args.func(args) or 0)


def settings_problems(exc: ValidationError) -> str:
    # Without the input values: a rejected value may be a secret.
    return "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))


if __name__ == "__main__":
    sys.exit(main())
