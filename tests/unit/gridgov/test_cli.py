"""The CLI loads only the module of the command it runs, and that module registers the command."""

from __future__ import annotations

import argparse

import pytest

from gridgov.cli import COMMANDS, command_module, parser


def subcommands(root: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_each_command_is_registered_by_the_module_the_cli_loads_for_it() -> None:
    every = subcommands(parser())
    assert {"validator", "up", "down", "status", "soak", "compare"} <= every
    for name in sorted(every):
        module = command_module([name])
        assert module in COMMANDS and name in subcommands(parser(module)), name


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["--log-level", "WARNING", "compare", "--seed", "7"], "compare"),
        (["--log-level=DEBUG", "status"], "up"),
        (["--help"], None),
        ([], None),
        (["no-such-command"], None),
    ],
)
def test_the_module_is_found_past_the_global_options(argv: list[str], module: str | None) -> None:
    assert command_module(argv) == module
