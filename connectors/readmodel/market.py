"""A run's market figures, read back from its ledger: what traded, at what prices, with what surplus,
how much demand went unmet, and what the carbon tax took.

``fold_market`` is the pure fold over a ledger's rows (in seq order); ``market_figures`` feeds it from a
database, and the counterfactual replay (``streams.counterfactual``) from the entries it decides in
memory, so a live run and its counterfactual are measured by the same code.

Trades are the accepted offers (take-it-or-leave-it) and the order book's fills (continuous, or a
tick's uniform-price clearing). Prices are in millicredits per 1,000 units. Surplus is a fill's
(bid limit - ask limit) x quantity / 1,000, whatever price it traded at; an accept states no buyer's
limit, so offers have none to report. Volatility is the spread of the per-tick average prices:
their standard deviation over their mean, in percent.

Demand is what the meter read as consumed; what the ledger could not serve from the account is unmet
(the meter entry's ``shortfall`` effect). The grid has no outside supplier, so what was served came
from its own production: self-sufficiency is served / demand. Carbon: the energy the meter booked to
emitting producers (Wh), and the carbon tax they paid to ``system:treasury`` (the only payments into
it).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, NamedTuple

import orjson
import psycopg

from law.ledger import Entry
from law.policy import PRICE_QUOTE_UNITS
from law.state import SYSTEM_PRODUCTION, SYSTEM_TREASURY

CONNECT_TIMEOUT_S = 10
FETCH_COUNT = 10_000  # rows per round trip of a streamed query
ORDER_KINDS = ("bid", "ask")


class LedgerRow(NamedTuple):
    seq: int
    tick: int
    kind: str
    agent: str
    proposal_id: str
    effects: list[dict[str, Any]]
    body: dict[str, Any]
    postings: tuple[tuple[str, str, int], ...]

    @classmethod
    def of(cls, entry: Entry) -> LedgerRow:
        """The row of an entry sealed in memory (a counterfactual's, a test's)."""
        body = orjson.loads(entry.proposal_json)["body"]
        effects = orjson.loads(entry.effects_json)
        return cls(entry.seq, entry.tick, entry.kind, entry.agent, entry.proposal_id, effects, body, entry.postings)


@dataclass
class ResourceFigures:
    volume: int = 0  # units traded
    paid_mc: int = 0  # millicredits paid for them
    per_tick: dict[int, list[int]] = field(default_factory=dict)  # tick -> [units, millicredits]
    demand: int = 0  # units the meter read as consumed
    unmet: int = 0  # of which the ledger could not serve
    unmet_critical: int = 0  # of which at critical loads

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

    @property
    def self_sufficiency_pct(self) -> float | None:
        return 100 * (self.demand - self.unmet) / self.demand if self.demand else None


@dataclass
class MarketFigures:
    resources: dict[str, ResourceFigures] = field(default_factory=lambda: defaultdict(ResourceFigures))
    trades: int = 0
    surplus_mc: int | None = None  # None: no fill of the book (offers state no buyer's limit)
    orders: dict[str, int] = field(default_factory=dict)  # placed, filled, partly filled, unfilled
    offers: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # opened, and closed by why
    emitted_energy_wh: int = 0  # produced by emitting producers
    carbon_tax_mc: int = 0


@dataclass
class _Registry:
    """Who emits and whose load is critical, by account, as the ledger registered them."""

    emitting: set[str] = field(default_factory=set)
    critical: set[str] = field(default_factory=set)

    def register(self, participant: dict[str, Any]) -> None:
        accounts = participant.get("accounts", [])
        if participant.get("emits_carbon"):
            self.emitting.update(accounts)
        if participant.get("critical_load"):
            self.critical.update(accounts)


def market_figures(database_url: str) -> MarketFigures:
    # Not autocommit: the two server-side cursors stream inside one read transaction.
    with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        return fold_market(_rows(conn))


def _rows(conn: psycopg.Connection[Any]) -> Iterator[LedgerRow]:
    with conn.cursor(name="market_entries") as entries, conn.cursor(name="market_postings") as postings:
        entries.itersize = postings.itersize = FETCH_COUNT
        entries.execute(
            "SELECT seq, tick, kind, agent, proposal_id, effects_json, proposal_json FROM ledger ORDER BY seq"
        )
        postings.execute("SELECT seq, account, resource, amount FROM postings ORDER BY seq, idx")
        by_seq = groupby(postings, key=lambda row: row[0])
        pending = next(by_seq, None)
        for seq, tick, kind, agent, proposal_id, effects_json, proposal_json in entries:
            own: tuple[tuple[str, str, int], ...] = ()
            if pending is not None and pending[0] == seq:
                own = tuple((a, r, amount) for _, a, r, amount in pending[1])
                pending = next(by_seq, None)
            body = orjson.loads(proposal_json)["body"]
            yield LedgerRow(seq, tick, kind, agent, proposal_id, orjson.loads(effects_json), body, own)


def fold_market(rows: Iterable[LedgerRow]) -> MarketFigures:
    fold = MarketFold()
    for row in rows:
        fold.add(row)
    return fold.figures()


class MarketFold:
    """The figures of a ledger fed one row at a time, in seq order."""

    def __init__(self) -> None:
        self._figures = MarketFigures()
        self._registry = _Registry()
        self._offers: dict[str, dict[str, Any]] = {}  # offer id -> its offer_open effect
        self._orders: dict[str, dict[str, Any]] = {}  # order id -> the bid's or ask's body
        self._filled: dict[str, int] = defaultdict(int)

    def add(self, row: LedgerRow) -> None:
        figures = self._figures
        if row.kind in ORDER_KINDS:
            self._orders[f"{row.agent}/{row.proposal_id}"] = row.body
        elif row.kind == "meter":
            _add_meter(figures, self._registry, row)
        if row.kind != "genesis":
            figures.carbon_tax_mc += sum(q for a, r, q in row.postings if a == SYSTEM_TREASURY and q > 0)
        for effect in row.effects:
            if effect["t"] == "register":
                self._registry.register(effect["participant"])
            elif effect["t"] == "offer_open":
                self._offers[effect["offer_id"]] = effect
                figures.offers["opened"] += 1
            elif effect["t"] == "offer_close":
                figures.offers[effect["why"]] += 1
            if effect["t"] == "offer_close" and effect["why"] == "accepted":
                offer = self._offers[effect["offer_id"]]
                figures.resources[offer["resource"]].add(row.tick, offer["quantity"], offer["price"])
                figures.trades += 1
            elif effect["t"] == "fill":
                _add_fill(figures, row.tick, effect, self._orders)
                for order_id in (effect["maker"], effect["taker"]):
                    self._filled[order_id] += effect["quantity"]

    def figures(self) -> MarketFigures:
        self._figures.orders = _order_outcomes(self._orders, self._filled)
        return self._figures


def _add_meter(figures: MarketFigures, registry: _Registry, row: LedgerRow) -> None:
    for reading in row.body["readings"]:
        figures.resources[reading["resource"]].demand += reading.get("consumed", 0)  # 0 may be left out
    for effect in row.effects:
        if effect["t"] == "shortfall":
            for account, resource, units in effect["units"]:
                figures.resources[resource].unmet += units
                if account in registry.critical:
                    figures.resources[resource].unmet_critical += units
    # Production is booked as a pair, system:production to the producer (``law.decide._meter_postings``);
    # the entry's other energy postings (consumption, the tick's clearing) are not production.
    figures.emitted_energy_wh += sum(
        credit[2]
        for debit, credit in zip(row.postings, row.postings[1:], strict=False)
        if debit[:2] == (SYSTEM_PRODUCTION, "energy") and credit[0] in registry.emitting
    )


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
