"""``gridgov keys issue AGENT``: one participant's (or the meter's) key file, and only that key.

Run on the validator's host, which alone holds the root secret. Hand the file to the agent's process
(``gridgov propose --key FILE``); it can then sign as that agent and no other, and never as an operator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import agent_keys, config
from core.key_secret import key_secret


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="issue one agent's key file (on the validator's host)")
    parser.add_argument("action", choices=("issue",))
    parser.add_argument("agent", help="the participant or meter the key is for")
    parser.add_argument("--generation", type=int, default=0, help="key generation (one more per participant_rekey)")
    parser.add_argument("--out", type=Path, help="default: GRID_HOME/keys/AGENT.gGENERATION.key (0600)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    key = agent_keys.issue(key_secret(settings), args.agent, args.generation)
    path = args.out or agent_keys.default_path(settings.home, args.agent, args.generation)
    try:
        agent_keys.write(path, key)
    except agent_keys.KeyFileError as exc:
        raise SystemExit(f"keys: {exc}") from exc
    print(f"{path}  agent {key.agent}  generation {key.generation}  fingerprint {key.fingerprint}")
    return 0
