"""``gridgov compare``: the same scenarios and seed under each market mechanism, side by side.

Each column is a full ``simulate`` run (its own database and topics, verified): take-it-or-leave-it
offers, the continuous order book, and uniform-price clearing once per tick. The rows are what an
operator compares them on: unmet demand, volume, prices and their volatility, surplus, rejections.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from agents import scenario as scenarios
from agents.simulate import run
from agents.simulation_config import MARKETS, SEED_DEFAULT, TICKS_DEFAULT, SimulationConfig, SimulationError, for_market
from agents.summary import Summary
from connectors.readmodel.market import MarketFigures, market_figures
from core import config
from core.key_secret import key_secret
from core.tables import format_table
from gridgov import infra

SCENARIOS_DEFAULT = ("default", "heatwave")
REASONS_SHOWN_MAX = 3


@dataclass(frozen=True)
class Column:
    scenario: str
    market: str
    summary: Summary
    market_figures: MarketFigures


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
    columns = []
    try:
        for name in args.scenarios.split(","):
            scenario = scenarios.load(scenarios.resolve(name))
            for market in args.markets.split(","):
                run_config = SimulationConfig(
                    for_market(scenario, market), args.ticks, args.seed, market=market, progress=False
                )
                summary = run(run_config, settings, key_secret(settings))
                columns.append(Column(scenario.name, market, summary, market_figures(summary.database_url)))
    except (SimulationError, scenarios.ScenarioError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 1
    print(render(columns, args.seed, args.ticks))
    return 1 if any(c.summary.verify_problems for c in columns) else 0


def render(columns: list[Column], seed: int, ticks: int) -> str:
    header = ("", *(f"{c.scenario}/{c.market}" for c in columns))
    rows = [(label, *(cell(c) for c in columns)) for label, cell in ROWS]
    return f"Markets compared: seed {seed}, {ticks} ticks per run\n" + format_table(header, rows)


def _unmet(resource: str) -> Callable[[Column], str]:
    return lambda c: f"{sum(by.get(resource, 0) for by in c.summary.shortfall_total.values()):,}"


def _critical(c: Column) -> str:
    return f"{sum(c.summary.shortfall_total.get(a, {}).get('energy', 0) for a in c.summary.critical):,}"


def _volume(resource: str) -> Callable[[Column], str]:
    return lambda c: f"{c.market_figures.resources[resource].volume:,}"


def _price(resource: str) -> Callable[[Column], str]:
    def cell(c: Column) -> str:
        price = c.market_figures.resources[resource].price_per_1000
        return "-" if price is None else f"{price:,}"

    return cell


def _volatility(resource: str) -> Callable[[Column], str]:
    def cell(c: Column) -> str:
        volatility = c.market_figures.resources[resource].volatility_pct
        return "-" if volatility is None else f"{volatility:.0f} %"

    return cell


def _surplus(c: Column) -> str:
    surplus = c.market_figures.surplus_mc
    return "n/a" if surplus is None else f"{surplus:,}"


def _reasons(c: Column) -> str:
    top = list(c.summary.rejected_by_reason.items())[:REASONS_SHOWN_MAX]
    return " ".join(f"{reason} {count}" for reason, count in top) or "none"


def _head(c: Column) -> str:
    verified = "verified" if not c.summary.verify_problems else "VERIFY FAILED"
    return f"{c.summary.head_hash[:12]} {verified}"


ROWS: tuple[tuple[str, Callable[[Column], str]], ...] = (
    ("unmet energy (Wh)", _unmet("energy")),
    ("unmet water (l)", _unmet("water")),
    ("unmet critical energy (Wh)", _critical),
    ("energy traded (Wh)", _volume("energy")),
    ("water traded (l)", _volume("water")),
    ("energy price (mc/kWh)", _price("energy")),
    ("water price (mc/m3)", _price("water")),
    ("energy price volatility", _volatility("energy")),
    ("water price volatility", _volatility("water")),
    ("trades", lambda c: f"{c.market_figures.trades:,}"),
    ("surplus (mc)", _surplus),
    ("rejections (top)", _reasons),
    ("head", _head),
)
