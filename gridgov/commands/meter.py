"""``gridgov meter --key FILE``: the live grid's clock, the operator's metering service (see
``agents.live_meter``); with ``--registry`` it founds an empty ledger first, signed by the operator."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import orjson

from agents import scenario as scenarios
from agents.live_meter import Genesis, MeterError, MeterService
from agents.simulation_config import MARKETS, SEED_DEFAULT, SimulationError, for_market
from core import agent_keys, config
from core.identities import IdentityError, load_operator
from gridgov.commands.agent import stop_on_signals
from schemas.types import TICK_MAX

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("meter", help="the live grid's clock: one meter entry every GRID_TICK_S seconds")
    parser.add_argument("--key", type=Path, required=True, help="the meter's key file")
    parser.add_argument(
        "--registry",
        type=Path,
        help="JSON of agent -> key fingerprint (`gridgov up` writes it): found an empty ledger with them",
    )
    parser.add_argument("--scenario", help="profiles, policy and founders (default: GRID_LIVE_SCENARIO)")
    parser.add_argument("--market", choices=MARKETS, help="the genesis policy's market (default: GRID_LIVE_MARKET)")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT, help="the readings' noise")
    parser.add_argument("--tick-s", type=float, help="seconds between entries (default: GRID_TICK_S)")
    parser.add_argument("--ticks-max", type=int, default=TICK_MAX, help="stop after this many entries")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    try:
        key = agent_keys.load(args.key)
        name = args.scenario or settings.live_scenario
        scenario = for_market(scenarios.load(scenarios.resolve(name)), args.market or settings.live_market)
    except (agent_keys.KeyFileError, scenarios.ScenarioError, SimulationError) as exc:
        print(f"meter: {exc}", file=sys.stderr)
        return 2
    genesis = None
    if args.registry is not None:
        try:
            operator = load_operator(settings.home, scenario.operator)
        except IdentityError as exc:  # enough while the ledger has its genesis: reported if it has not
            logger.warning("no operator key: the meter cannot found a ledger", extra={"why": str(exc)})
        else:
            genesis = Genesis(operator, orjson.loads(args.registry.read_bytes()))
    stop = stop_on_signals()
    try:
        meter = MeterService(settings, scenario, args.seed, args.tick_s or settings.tick_s, key, genesis)
        try:
            meter.run(stop, args.ticks_max)
        finally:
            meter.close()
    except MeterError as exc:
        print(f"meter: {exc}", file=sys.stderr)
        return 1
    return 0
