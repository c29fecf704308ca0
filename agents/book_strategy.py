"""A deterministic strategy for the order book: bid when short, ask when long, reprice what rests.

The law matches (law/book.py); this only chooses limits. A buyer bids for what it is short of at a limit
that rises with its shortfall and with every bid that rested unfilled; a seller asks for part of its
surplus near the reference price and undercuts a step each time an ask rested unfilled. Same seed,
same views: same intents (it has no randomness and reads no clock).
"""

from __future__ import annotations

from agents.heuristic import (
    REFERENCE_PRICE_PER_1000,
    RESERVE_TICKS,
    RESOURCES_TRADED,
    UNDERCUT_STEP_PCT,
    UNDERCUT_STEPS_MAX,
    _need,
)
from agents.strategy import Decision
from agents.view import AgentView, RestingOrder
from schemas.intent import Intent
from schemas.types import QUANTITY_MAX, Resource

ORDER_OPEN_TICKS = 4
ORDER_STALE_TICKS = 2  # an own order resting unfilled this long is cancelled and repriced
BID_RAISE_STEP_PCT = 10  # each bid that rested unfilled raises the next limit by this much
BID_RAISES_MAX = 10
BID_SHORTFALL_PCT_MAX = 100  # and the shortfall raises it by up to this much
PRICE_UNITS = 1_000


def _traded(resource: str) -> Resource:
    found = next((r for r in RESOURCES_TRADED if r == resource), None)
    assert found is not None, f"an own order for {resource!r}, which is not traded"
    return found


def _hold(rationale: str) -> Intent:
    return Intent(action="hold", rationale=rationale)


class BookStrategy:
    name = "heuristic"

    def __init__(self) -> None:
        self._raises: dict[str, int] = {}  # resource -> bid limit raises
        self._undercuts: dict[str, int] = {}  # resource -> ask undercut steps
        self._first_seen: dict[str, int] = {}  # own resting order id -> the tick it was first seen

    def choose(self, view: AgentView) -> Decision:
        self._track(view)
        # One intent a tick: buying and selling take turns first, so a seller short of something else
        # (a desalination plant buying energy each tick) still gets its asks out.
        trades = (self._bid, self._ask) if view.tick % 2 == 0 else (self._ask, self._bid)
        intent = (
            (_hold("circuit breaker open: holding") if view.breaker_open else None)
            or self._reprice_stale(view)
            or trades[0](view)
            or trades[1](view)
            or _hold("balanced: nothing to buy or sell")
        )
        return Decision(intent, {"source": "heuristic", "rationale": intent.rationale})

    def _track(self, view: AgentView) -> None:
        resting = {o.order_id for o in view.own_orders}
        for order_id in [i for i in self._first_seen if i not in resting]:
            del self._first_seen[order_id]
        for order in view.own_orders:
            self._first_seen.setdefault(order.order_id, view.tick)

    def _own(self, view: AgentView, side: str, resource: str) -> RestingOrder | None:
        return next((o for o in view.own_orders if o.side == side and o.resource == resource), None)

    def _reprice_stale(self, view: AgentView) -> Intent | None:
        for order in view.own_orders:
            if view.tick - self._first_seen.get(order.order_id, view.tick) < ORDER_STALE_TICKS:
                continue
            steps = self._raises if order.side == "bid" else self._undercuts
            steps[order.resource] = min(steps.get(order.resource, 0) + 1, UNDERCUT_STEPS_MAX)
            return Intent(
                action="cancel",
                resource=_traded(order.resource),
                offer_id=order.order_id,
                rationale=f"{order.side} {order.order_id} rested unfilled: reprice it",
            )
        return None

    def _bid(self, view: AgentView) -> Intent | None:
        needs = {r: _need(view, r) for r in RESOURCES_TRADED}
        for resource in sorted(RESOURCES_TRADED, key=lambda r: -needs[r]):
            if needs[resource] <= 0:
                self._raises.pop(resource, None)
                continue
            if self._own(view, "bid", resource) is not None:
                continue
            limit = self._bid_limit(view, resource, needs[resource])
            quantity = min(needs[resource], view.trade_quantity_max.get(resource, QUANTITY_MAX))
            # the escrow is ceil(quantity x limit / 1000) credits: bid for no more than it can hold
            credits = view.balances.get("credits", 0)
            if limit:
                quantity = min(quantity, credits * PRICE_UNITS // limit)
            if quantity < 1:
                continue
            return Intent(
                action="bid",
                resource=resource,
                quantity=quantity,
                price=limit,
                open_for_ticks=ORDER_OPEN_TICKS,
                rationale=f"short {needs[resource]} {resource}: bid {quantity} at up to {limit} mc/1000",
            )
        return None

    def _bid_limit(self, view: AgentView, resource: str, need: int) -> int:
        consumption = max(view.expected_consumption.get(resource, 0), 1)
        shortfall_pct = min(need * 100 // consumption, BID_SHORTFALL_PCT_MAX)
        raise_pct = min(self._raises.get(resource, 0), BID_RAISES_MAX) * BID_RAISE_STEP_PCT
        limit = REFERENCE_PRICE_PER_1000[resource] * (100 + shortfall_pct + raise_pct) // 100
        ceiling = view.price_ceiling.get(resource)
        return min(limit, ceiling) if ceiling else limit

    def _ask(self, view: AgentView) -> Intent | None:
        for resource in RESOURCES_TRADED:
            if self._own(view, "ask", resource) is not None or _need(view, resource) > 0:
                continue
            balance = view.balances.get(resource, 0)
            surplus = min(balance - RESERVE_TICKS * view.expected_consumption.get(resource, 0), balance)
            # one resting ask per resource, so it offers the whole surplus; the book fills it in parts
            quantity = min(surplus, view.trade_quantity_max.get(resource, QUANTITY_MAX))
            if quantity < 1:
                continue
            price = self._ask_price(view, resource)
            return Intent(
                action="ask",
                resource=resource,
                quantity=quantity,
                price=price,
                open_for_ticks=ORDER_OPEN_TICKS,
                rationale=f"long {resource}: {surplus} above a {RESERVE_TICKS}-tick reserve; ask {quantity} at {price}",
            )
        return None

    def _ask_price(self, view: AgentView, resource: str) -> int:
        steps = self._undercuts.get(resource, 0)
        price = REFERENCE_PRICE_PER_1000[resource] * (100 - steps * UNDERCUT_STEP_PCT) // 100
        ceiling = view.price_ceiling.get(resource)
        return max(1, min(price, ceiling) if ceiling else price)
