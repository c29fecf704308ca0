"""``gridgov compare``: the same scenarios and seed under each market mechanism, side by side.

Each column of the first table is a full ``simulate`` run (its own database and topics, verified):
take-it-or-leave-it offers, the continuous order book, and uniform-price clearing once per tick. The
second table keeps the order flow fixed: each scenario's continuous-book log as the validator decided
it, and the same log re-decided under uniform-price clearing (``streams.counterfactual``), so only the
matching differs. The rows are what an operator compares them on: unmet demand, self-sufficiency,
volume, prices and their volatility, surplus, carbon, rejections.
"""

from __future__ import annotations

import argparse
import sys

from agents import scenario as scenarios
from agents.simulate import run
from agents.simulation_config import MARKETS, SEED_DEFAULT, TICKS_DEFAULT, SimulationConfig, SimulationError, for_market
from agents.summary import Summary
from connectors.readmodel.market import market_figures
from connectors.readmodel.replay import stored_position
from core import config
from core.config import Settings
from core.identities import operator_signer
from core.key_secret import key_secret
from gridgov import infra
from gridgov.market_table import MarketColumn, render_markets
from streams.counterfactual import Counterfactual, counterfactual
from streams.replay_errors import ReplayError

SCENARIOS_DEFAULT = ("default", "heatwave")
COUNTERFACTUAL_FROM, COUNTERFACTUAL_UNDER = "book", "clearing"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("compare", help="run scenarios under each market mechanism and compare them")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS_DEFAULT), help="comma-separated scenario names")
    parser.add_argument("--markets", default=",".join(MARKETS), help=f"comma-separated, from {', '.join(MARKETS)}")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT, help="the same seed for every run")
    parser.add_argument("--ticks", type=int, default=TICKS_DEFAULT, help="ticks per run")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    infra.up(settings=settings)
    secret = key_secret(settings)
    runs: list[tuple[str, str, Summary]] = []
    replays: list[tuple[str, Counterfactual]] = []
    try:
        for name in args.scenarios.split(","):
            scenario = scenarios.load(scenarios.resolve(name))
            for market in args.markets.split(","):
                run_config = SimulationConfig(
                    for_market(scenario, market), args.ticks, args.seed, market=market, progress=False
                )
                summary = run(run_config, settings, secret)
                runs.append((scenario.name, market, summary))
                if market == COUNTERFACTUAL_FROM:
                    founder = operator_signer(settings.home, scenario.operator).public_key
                    replays.append((scenario.name, replay_under(settings, summary, founder, secret)))
    except (SimulationError, scenarios.ScenarioError, ReplayError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    print(f"Markets compared: seed {args.seed}, {args.ticks} ticks per run")
    print(render_markets([run_column(f"{s}/{m}", summary) for s, m, summary in runs]))
    if replays:
        print(f"\nThe same order flow, matched two ways: each {COUNTERFACTUAL_FROM} run's log re-decided under "
              f"{COUNTERFACTUAL_UNDER} (in memory, nothing written)")  # fmt: skip
        print(render_markets([c for s, cf in replays for c in replay_columns(s, cf)]))
    faithful = all(cf.faithful for _, cf in replays)
    return 1 if any(summary.verify_problems for _, _, summary in runs) or not faithful else 0


def run_column(title: str, summary: Summary) -> MarketColumn:
    verified = "verified" if not summary.verify_problems else "VERIFY FAILED"
    footer = f"{summary.head_hash[:12]} {verified}"
    return MarketColumn(title, market_figures(summary.database_url), summary.rejected_by_reason, footer)


def replay_under(settings: Settings, summary: Summary, founder: str, secret: bytes) -> Counterfactual:
    """The run's whole log re-decided under ``COUNTERFACTUAL_UNDER``, trusting the run's founder."""
    run_settings = settings.replace(
        topic_prefix=summary.topic_prefix, database_url_external=summary.database_url, founding_operators=founder
    )
    bound = stored_position(summary.database_url, run_settings.topic("proposals")) or 0
    return counterfactual(run_settings, secret, bound, COUNTERFACTUAL_UNDER)


def replay_columns(scenario: str, cf: Counterfactual) -> list[MarketColumn]:
    return [
        MarketColumn(
            f"{scenario}/{COUNTERFACTUAL_FROM} log",
            cf.as_decided.figures,
            dict(cf.as_decided.rejected_by_reason),
            f"{cf.as_decided.head_hash.hex()[:12]} {'= live head' if cf.faithful else 'DIFFERS FROM LIVE'}",
        ),
        MarketColumn(
            f"same log, {cf.mechanism}",
            cf.pinned.figures,
            dict(cf.pinned.rejected_by_reason),
            f"{cf.pinned.entries:,} entries in {cf.seconds:.1f} s",
        ),
    ]
