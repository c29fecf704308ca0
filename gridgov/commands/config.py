"""``gridgov config [--markdown]``: every setting's value and where it came from, or the README's table."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from core import config
from core.config import REPO_ROOT, Settings
from core.tables import format_table


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="show every setting: its value (secrets masked), where it came from, what it means"
    )
    parser.add_argument("--markdown", action="store_true", help="the README's table of variables and defaults")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    path = config.settings_file()
    print(effective_table(config.load(), config.origins()))
    print(f"\nsettings file: {path}{'' if path.exists() else ' (absent)'}")
    return 0


def effective_table(settings: Settings, origins: dict[str, str]) -> str:
    rows = [(v.name, shown(getattr(settings, v.field)), origins[v.name], v.meaning) for v in config.variables()]
    return format_table(("NAME", "VALUE", "SOURCE", "MEANING"), rows)


def shown(value: object) -> str:
    """A value as it may be printed: secrets only as set or unset, passwords in URLs masked."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "set (hidden)"
    return _without_password(config.env_text(value))


def _without_password(text: str) -> str:
    parts = urlsplit(text)
    if not parts.password:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {_default_cell(v.default)} | {_escaped(v.meaning)} |" for v in config.variables()]
    return "\n".join(lines)


def _default_cell(default: object) -> str:
    if default is None:
        return "unset"
    # Paths inside the checkout are shown relative to it, so the table reads the same in every clone.
    if isinstance(default, Path) and default.is_relative_to(REPO_ROOT):
        return f"`{default.relative_to(REPO_ROOT)}/`"
    return f"`{config.env_text(default)}`"


def _escaped(text: str) -> str:
    return text.replace("|", "\\|")
