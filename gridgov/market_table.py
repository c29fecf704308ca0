"""One table of market figures, a column per run (or per mechanism on the same log), for ``compare``
and ``replay --mechanism``: the rows an operator compares mechanisms on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from connectors.readmodel.market import MarketFigures
from core.tables import format_table

REASONS_SHOWN_MAX = 3


@dataclass(frozen=True)
class MarketColumn:
    title: str
    figures: MarketFigures
    rejected_by_reason: dict[str, int]
    footer: str  # the last row: the head hash, and whether it verified or matched


def render_markets(columns: list[MarketColumn]) -> str:
    header = ("", *(c.title for c in columns))
    return format_table(header, [(label, *(cell(c) for c in columns)) for label, cell in ROWS])


def _count(value: int) -> str:
    return f"{value:,}"


def _unmet(resource: str) -> Callable[[MarketColumn], str]:
    return lambda c: _count(c.figures.resources[resource].unmet)


def _critical(c: MarketColumn) -> str:
    return _count(c.figures.resources["energy"].unmet_critical)


def _self_sufficiency(resource: str) -> Callable[[MarketColumn], str]:
    def cell(c: MarketColumn) -> str:
        pct = c.figures.resources[resource].self_sufficiency_pct
        return "-" if pct is None else f"{pct:.1f} %"

    return cell


def _volume(resource: str) -> Callable[[MarketColumn], str]:
    return lambda c: _count(c.figures.resources[resource].volume)


def _price(resource: str) -> Callable[[MarketColumn], str]:
    def cell(c: MarketColumn) -> str:
        price = c.figures.resources[resource].price_per_1000
        return "-" if price is None else _count(price)

    return cell


def _volatility(resource: str) -> Callable[[MarketColumn], str]:
    def cell(c: MarketColumn) -> str:
        volatility = c.figures.resources[resource].volatility_pct
        return "-" if volatility is None else f"{volatility:.0f} %"

    return cell


def _surplus(c: MarketColumn) -> str:
    surplus = c.figures.surplus_mc
    return "n/a" if surplus is None else _count(surplus)


def _orders(c: MarketColumn) -> str:
    o = c.figures.orders
    if not o.get("placed"):
        return "none"
    return f"{o['filled']:,}/{o['partly filled']:,}/{o['unfilled']:,} of {o['placed']:,}"


def _reasons(c: MarketColumn) -> str:
    top = sorted(c.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:REASONS_SHOWN_MAX]
    return " ".join(f"{reason} {count}" for reason, count in top) or "none"


ROWS: tuple[tuple[str, Callable[[MarketColumn], str]], ...] = (
    ("unmet energy (Wh)", _unmet("energy")),
    ("unmet water (l)", _unmet("water")),
    ("unmet critical energy (Wh)", _critical),
    ("self-sufficiency energy", _self_sufficiency("energy")),
    ("self-sufficiency water", _self_sufficiency("water")),
    ("energy traded (Wh)", _volume("energy")),
    ("water traded (l)", _volume("water")),
    ("energy price (mc/kWh)", _price("energy")),
    ("water price (mc/m3)", _price("water")),
    ("energy price volatility", _volatility("energy")),
    ("water price volatility", _volatility("water")),
    ("trades", lambda c: _count(c.figures.trades)),
    ("surplus (mc)", _surplus),
    ("orders filled/partly/unfilled", _orders),
    ("emitting energy produced (Wh)", lambda c: _count(c.figures.emitted_energy_wh)),
    ("carbon tax paid (mc)", lambda c: _count(c.figures.carbon_tax_mc)),
    ("rejections (top)", _reasons),
    ("head", lambda c: c.footer),
)
