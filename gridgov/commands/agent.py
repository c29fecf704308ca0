"""``gridgov agent run --key FILE``: one live participant, holding its own key file and no other.

``gridgov agent run-all --keys-dir DIR``: every key file in DIR, each as a ``run`` process of its own
(a container of participants, compose's ``agents``). Crash-only: when one child exits, the others are
stopped and the command fails, so the container's restart policy brings them all back.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from agents import scenario as scenarios
from agents.live_agent import LiveAgent
from agents.simulation_config import MARKETS, SEED_DEFAULT, SimulationError, for_market
from core import agent_keys, config
from core.process import Service
from schemas.types import PARTICIPANTS_COUNT_MAX, TICK_MAX

CHILD_POLL_S = 1.0
CHILD_STOP_TIMEOUT_S = 15.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("agent", help="run one live participant with its own key file")
    parser.add_argument("action", choices=("run", "run-all"))
    parser.add_argument("--key", type=Path, help="run: the agent's key file (`gridgov participants add`)")
    parser.add_argument("--keys-dir", type=Path, help="run-all: a directory of key files, one process each")
    parser.add_argument("--scenario", help="whose profiles it plans with (default: GRID_LIVE_SCENARIO)")
    parser.add_argument("--market", choices=MARKETS, help="how it trades (default: GRID_LIVE_MARKET)")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT, help="the strategy's randomness")
    parser.add_argument("--log-dir", type=Path, help="run-all: a log file per child there (default: this output)")
    parser.add_argument("--rounds-max", type=int, default=TICK_MAX, help="stop after this many waits for a tick")
    parser.set_defaults(func=handle)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM (supervisor's stop) or SIGINT: the loop ends after its current step."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def handle(args: argparse.Namespace) -> int:
    if args.action == "run-all":
        return run_all(args)
    if args.key is None:
        print("agent run: --key is required", file=sys.stderr)
        return 2
    settings = config.load()
    market = args.market or settings.live_market
    try:
        key = agent_keys.load(args.key)
        scenario = for_market(scenarios.load(scenarios.resolve(args.scenario or settings.live_scenario)), market)
    except (agent_keys.KeyFileError, scenarios.ScenarioError, SimulationError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    agent = LiveAgent(settings, scenario, key, market, args.seed)
    try:
        agent.run(stop, args.rounds_max)
    finally:
        agent.close()
    return 0


def run_all(args: argparse.Namespace) -> int:
    """One ``agent run`` child per key file; the first to exit ends them all (bounded waits)."""
    if args.keys_dir is None:
        print("agent run-all: --keys-dir is required", file=sys.stderr)
        return 2
    keys = sorted(args.keys_dir.glob("*.key"))[:PARTICIPANTS_COUNT_MAX]
    if not keys:
        print(f"agent run-all: no key files in {args.keys_dir}", file=sys.stderr)
        return 2
    options = [a for name in ("scenario", "market") if getattr(args, name) for a in (f"--{name}", getattr(args, name))]
    stop = stop_on_signals()
    children = [
        Service(
            key.stem,
            [
                sys.executable,
                "-m",
                "gridgov.cli",
                "agent",
                "run",
                "--key",
                str(key),
                "--seed",
                str(args.seed),
                *options,
            ],
            dict(os.environ),
            Path("/dev/stdout") if args.log_dir is None else args.log_dir / f"{key.stem}.log",
        )
        for key in keys
    ]
    try:
        for _ in range(args.rounds_max):
            if stop.wait(CHILD_POLL_S) or not all(child.alive() for child in children):
                break
    finally:
        for child in children:
            child.stop(CHILD_STOP_TIMEOUT_S)
    return 0 if stop.is_set() else 1
