"""A run's market figures, read back from its ledger: what traded, at what prices, with what surplus.

Trades are the accepted offers (take-it-or-leave-it) and the order book's fills (continuous, or a
tick's uniform-price clearing). Prices are in millicredits per 1,000 units. Surplus is a fill's
(bid limit - ask limit) x quantity / 1,000, whatever price it traded at; an accept states no buyer's
limit, so offers have none to report. Volatility is the spread of the per-tick average prices:
their standard deviation over their mean, in percent.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from law.policy import PRICE_QUOTE_UNITS

CONNECT_TIMEOUT_S = 10
ORDER_KINDS = ("bid", "ask")


@dataclass
class ResourceFigures:
    volume: int = 0  # units traded
    paid_mc: int = 0  # millicredits paid for them
    per_tick: dict[int, list[int]] = field(default_factory=dict)  # tick -> [units, millicredits]

    def add(self, tick: int, units: int, paid_mc: int) -> None:
        self.volume += units
        self.paid_mc += paid_mc
        figures = self.per_tick.setdefault(tick, [0, 0])
        figures[0] += units
        figures[1] += paid_mc

    @property
    def price_per_1000(self) -> int | None:
        return self.paid_mc * PRICE_QUOTE_UNITS // self.volume if self.volume else None

    @property
    def volatility_pct(self) -> float | None:
        prices = [paid * PRICE_QUOTE_UNITS / units for units, paid in self.per_tick.values() if units]
        if len(prices) < 2 or not statistics.fmean(prices):
            return None
        return 100 * statistics.pstdev(prices) / statistics.fmean(prices)


@dataclass
class MarketFigures:
    resources: dict[str, ResourceFigures] = field(default_factory=lambda: defaultdict(ResourceFigures))
    trades: int = 0
    surplus_mc: int | None = None  # None: no fill of the book (offers state no buyer's limit)
    orders: dict[str, int] = field(default_factory=dict)  # placed, filled, partly filled, unfilled
    offers: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # opened, and closed by why


def market_figures(database_url: str) -> MarketFigures:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        rows = conn.execute(
            "SELECT tick, kind, agent, proposal_id, effects_json, proposal_json FROM ledger ORDER BY seq"
        ).fetchall()
    figures = MarketFigures()
    offers: dict[str, dict[str, Any]] = {}  # offer id -> its offer_open effect
    orders: dict[str, dict[str, Any]] = {}  # order id -> the bid's or ask's body
    filled: dict[str, int] = defaultdict(int)
    for tick, kind, agent, proposal_id, effects_json, proposal_json in rows:
        effects = orjson.loads(effects_json)
        if kind in ORDER_KINDS:
            orders[f"{agent}/{proposal_id}"] = orjson.loads(proposal_json)["body"]
        for effect in effects:
            if effect["t"] == "offer_open":
                offers[effect["offer_id"]] = effect
                figures.offers["opened"] += 1
            elif effect["t"] == "offer_close":
                figures.offers[effect["why"]] += 1
            if effect["t"] == "offer_close" and effect["why"] == "accepted":
                offer = offers[effect["offer_id"]]
                figures.resources[offer["resource"]].add(tick, offer["quantity"], offer["price"])
                figures.trades += 1
            elif effect["t"] == "fill":
                _add_fill(figures, tick, effect, orders)
                for order_id in (effect["maker"], effect["taker"]):
                    filled[order_id] += effect["quantity"]
    figures.orders = _order_outcomes(orders, filled)
    return figures


def _add_fill(figures: MarketFigures, tick: int, fill: dict[str, Any], orders: dict[str, dict[str, Any]]) -> None:
    maker, taker = orders[fill["maker"]], orders[fill["taker"]]
    bid, ask = (maker, taker) if maker["kind"] == "bid" else (taker, maker)
    figures.resources[bid["resource"]].add(tick, fill["quantity"], fill["payment"])
    figures.trades += 1
    surplus = (bid["price"] - ask["price"]) * fill["quantity"] // PRICE_QUOTE_UNITS
    figures.surplus_mc = (figures.surplus_mc or 0) + surplus


def _order_outcomes(orders: dict[str, dict[str, Any]], filled: dict[str, int]) -> dict[str, int]:
    outcomes = {"placed": len(orders), "filled": 0, "partly filled": 0, "unfilled": 0}
    for order_id, body in orders.items():
        got = filled.get(order_id, 0)
        outcome = "filled" if got == body["quantity"] else "partly filled" if got else "unfilled"
        outcomes[outcome] += 1
    return outcomes
