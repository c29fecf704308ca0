"""``python -m sinks [run|status] …``: the same as ``gridgov sinks``."""

from __future__ import annotations

import argparse
import sys

from gridgov.commands import sinks as command


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m")  # the subcommand adds "sinks"
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sinks", *argv])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
