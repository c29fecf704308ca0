"""A deterministic negotiating strategy: sell surplus near a reference price, buy when short.

Given the same seed and the same sequence of views it makes the same decisions: its randomness comes
from its own ``random.Random(seed)`` and it never reads the clock. Its memory is a handful of small
per-resource maps and a few bounded id queues, so it can run for any number of ticks.

One intent per tick, in this order: hold (breaker open, rate limited), buy what it is short of,
cancel its own offer that stayed unmatched (to re-offer cheaper next tick), offer surplus.
"""

from __future__ import annotations

import random
from collections import deque
from fractions import Fraction

from agents.strategy import Decision
from agents.view import AgentView, OpenOffer, RecentRejection
from schemas.intent import Intent
from schemas.types import QUANTITY_MAX, Resource

# Credits are money: spent when accepting, never offered as a resource.
RESOURCES_TRADED: tuple[Resource, ...] = ("energy", "water")
# Millicredits per 1,000 units: 0.15 credits per kWh, 2 credits per cubic metre of water.
REFERENCE_PRICE_PER_1000 = {"energy": 150, "water": 2000}
RESERVE_TICKS = 4  # sell only what exceeds this many ticks of expected consumption
SHORT_TICKS = 2  # buy when holding less than this many ticks of expected consumption
OFFER_SURPLUS_PCT_MIN, OFFER_SURPLUS_PCT_MAX = 30, 60  # part of the surplus offered at once
# Under half the undercut step, so a re-offer is always cheaper per unit than the one it replaces.
PRICE_JITTER_PCT = 2
OFFER_STALE_TICKS = 3  # an own offer unmatched this long is cancelled and re-offered cheaper
OFFER_OPEN_TICKS = OFFER_STALE_TICKS + 2  # outlives the staleness check: we cancel, it does not lapse
OFFER_VISIBLE_WAIT_TICKS = 2  # a sent offer may take this long to appear in the view
UNDERCUT_STEP_PCT = 5
UNDERCUT_STEPS_MAX = 8  # price floor: 60 % of the reference
CEILING_MISS_UNDERCUT_STEPS = 4  # rejected for a ceiling the view did not show: 20 % cheaper
BUY_LIMIT_SHORTFALL_PCT_MAX = 100  # the buy limit rises with the shortfall, by up to this much
BUY_FAILURE_STEP_PCT = 10  # and by this much for each failed attempt to buy
BUY_FAILURES_MAX = 10
COUNTER_GAP_PCT = 20  # an addressed offer this far above our limit is countered; further, rejected
SIZE_PCT_FULL = 100
REMEMBERED_IDS_MAX = 32
# Only the newest rejections are read: bounded work per tick, and fewer than are remembered, so an
# old rejection is never forgotten while it can still be read again.
REJECTIONS_READ_MAX = REMEMBERED_IDS_MAX // 2


def _hold(rationale: str) -> Intent:
    return Intent(action="hold", rationale=rationale)


def _unit_price(offer: OpenOffer) -> Fraction:
    return Fraction(offer.price, offer.quantity)


class HeuristicStrategy:
    name = "heuristic"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._hold_through_tick = -1
        self._undercut_steps: dict[str, int] = {}
        self._size_pct: dict[str, int] = {}  # shrinks after INSUFFICIENT_BALANCE / POLICY_CAP
        self._price_at_ceiling: set[str] = set()  # next offer exactly at the ceiling (PRICE_CEILING)
        self._buy_failures: dict[str, int] = {}
        self._posted_tick: dict[str, int] = {}  # offer sent, not yet visible in the view
        self._own_seen: dict[str, tuple[str, int, int]] = {}  # offer_id, first tick seen, open_until
        self._last_resource: dict[str, str] = {}  # intent action -> its resource, to place rejections
        self._tried_offers: deque[str] = deque(maxlen=REMEMBERED_IDS_MAX)
        self._cancelled: deque[str] = deque(maxlen=REMEMBERED_IDS_MAX)
        self._seen_rejections: deque[str] = deque(maxlen=REMEMBERED_IDS_MAX)

    def choose(self, view: AgentView) -> Decision:
        self._absorb_rejections(view)
        own = self._own_open_offers(view)
        self._track_own_offers(view, own)
        intent = (
            self._hold_reason(view)
            or self._negotiate(view)
            or self._buy(view)
            or self._cancel_stale(view, own)
            or self._sell(view, own)
            or _hold("balanced: nothing to buy or sell")
        )
        if intent.resource is not None:
            self._last_resource[intent.action] = intent.resource
        return Decision(intent, {"source": "heuristic", "rationale": intent.rationale})

    # --- memory ----------------------------------------------------------------------------------

    def _absorb_rejections(self, view: AgentView) -> None:
        for rejection in view.recent_rejections[-REJECTIONS_READ_MAX:]:
            if rejection.proposal_id in self._seen_rejections:
                continue  # the view repeats recent rejections; react to each once
            self._seen_rejections.append(rejection.proposal_id)
            self._react(view, rejection)

    def _react(self, view: AgentView, rejection: RecentRejection) -> None:
        reason = rejection.reason_code
        if reason in ("RATE_LIMITED", "CIRCUIT_OPEN"):
            self._hold_through_tick = max(self._hold_through_tick, view.tick)
            return
        resource = self._last_resource.get(rejection.kind)
        if resource is None:
            return
        if rejection.kind == "accept":
            # The offer is already in _tried_offers, so the next attempt picks another one.
            self._buy_failures[resource] = min(self._buy_failures.get(resource, 0) + 1, BUY_FAILURES_MAX)
        elif rejection.kind == "offer":
            self._posted_tick.pop(resource, None)  # nothing is pending: re-offer at once
            self._adjust_offer_terms(view, resource, reason)

    def _adjust_offer_terms(self, view: AgentView, resource: str, reason: str) -> None:
        # A cap or ceiling the view shows is applied when the next offer is sized and priced; only a
        # limit we cannot see needs a guess.
        cap_unknown = resource not in view.trade_quantity_max
        if reason == "INSUFFICIENT_BALANCE" or (reason == "POLICY_CAP" and cap_unknown):
            self._size_pct[resource] = max(1, self._size_pct.get(resource, SIZE_PCT_FULL) // 2)
        elif reason == "PRICE_CEILING" and resource in view.price_ceiling:
            self._price_at_ceiling.add(resource)
        elif reason == "PRICE_CEILING":
            steps = self._undercut_steps.get(resource, 0) + CEILING_MISS_UNDERCUT_STEPS
            self._undercut_steps[resource] = min(steps, UNDERCUT_STEPS_MAX)

    def _own_open_offers(self, view: AgentView) -> dict[str, OpenOffer]:
        """The oldest open, not-being-cancelled offer of ours per resource."""
        own: dict[str, OpenOffer] = {}
        mine = (
            o
            for o in view.open_offers
            if (o.seller == view.agent or o.account == view.account)
            and o.offer_id not in self._cancelled
            and o.open_until_tick >= view.tick
        )
        for offer in sorted(mine, key=lambda o: (o.open_until_tick, o.offer_id)):
            own.setdefault(offer.resource, offer)
        return own

    def _track_own_offers(self, view: AgentView, own: dict[str, OpenOffer]) -> None:
        for resource in RESOURCES_TRADED:
            offer, seen = own.get(resource), self._own_seen.get(resource)
            if offer is None and seen is not None:
                del self._own_seen[resource]
                offer_id, _, open_until = seen
                if offer_id not in self._cancelled and view.tick <= open_until:
                    # Gone before it lapsed and not by our cancel: it sold, so ask a little more again.
                    self._undercut_steps[resource] = max(0, self._undercut_steps.get(resource, 0) - 1)
            elif offer is not None and (seen is None or seen[0] != offer.offer_id):
                self._own_seen[resource] = (offer.offer_id, view.tick, offer.open_until_tick)
                self._posted_tick.pop(resource, None)
                # Accepted by the validator: grow back towards full size.
                size_pct = self._size_pct.pop(resource, SIZE_PCT_FULL)
                if size_pct * 2 < SIZE_PCT_FULL:
                    self._size_pct[resource] = size_pct * 2

    # --- decisions -------------------------------------------------------------------------------

    def _hold_reason(self, view: AgentView) -> Intent | None:
        if view.breaker_open:
            return _hold("circuit breaker open: holding")
        if view.tick <= self._hold_through_tick:
            return _hold("rate limited or breaker tripped: holding this tick")
        return None

    def _buy(self, view: AgentView) -> Intent | None:
        needs = {r: _need(view, r) for r in RESOURCES_TRADED}
        for resource in sorted(RESOURCES_TRADED, key=lambda r: -needs[r]):
            if needs[resource] <= 0:
                self._buy_failures.pop(resource, None)
                continue
            limit_per_1000 = self._buy_limit_per_1000(view, resource, needs[resource])
            offer = self._cheapest_acceptable(view, resource, limit_per_1000)
            if offer is None:
                failures = self._buy_failures.get(resource, 0) + 1
                self._buy_failures[resource] = min(failures, BUY_FAILURES_MAX)
                continue
            self._tried_offers.append(offer.offer_id)
            return Intent(
                action="accept",
                resource=resource,
                offer_id=offer.offer_id,
                rationale=(
                    f"short {needs[resource]} {resource}: cheapest offer {offer.offer_id} "
                    f"({offer.quantity} for {offer.price} mc) within limit {limit_per_1000} mc/1000"
                ),
            )
        return None

    def _negotiate(self, view: AgentView) -> Intent | None:
        """An offer addressed to us, on our turn, priced above our limit but within COUNTER_GAP_PCT of it:
        counter at our limit (alternating offers); further off, reject it; within the limit ``_buy``
        accepts it."""
        for offer in view.open_offers:
            if (
                offer.turn != view.agent
                or offer.offer_id in self._tried_offers
                or offer.resource not in RESOURCES_TRADED
            ):
                continue
            limit = self._buy_limit_per_1000(view, offer.resource, max(_need(view, offer.resource), 1))
            if offer.price * 1000 <= limit * offer.quantity:
                continue  # acceptable as it is
            self._tried_offers.append(offer.offer_id)
            if offer.price * 1000 * 100 > limit * offer.quantity * (100 + COUNTER_GAP_PCT):
                return Intent(
                    action="reject", offer_id=offer.offer_id, rationale=f"{offer.offer_id}: too far above our limit"
                )
            price = limit * offer.quantity // 1000
            return Intent(
                action="counter",
                resource=offer.resource,
                offer_id=offer.offer_id,
                quantity=offer.quantity,
                price=price,
                rationale=f"{offer.offer_id} asks {offer.price} mc; counter at our limit, {price} mc",
            )
        return None

    def _buy_limit_per_1000(self, view: AgentView, resource: str, need: int) -> int:
        consumption = max(view.expected_consumption.get(resource, 0), 1)
        shortfall_pct = min(need * 100 // consumption, BUY_LIMIT_SHORTFALL_PCT_MAX)
        failures_pct = self._buy_failures.get(resource, 0) * BUY_FAILURE_STEP_PCT
        return REFERENCE_PRICE_PER_1000[resource] * (100 + shortfall_pct + failures_pct) // 100

    def _cheapest_acceptable(self, view: AgentView, resource: str, limit_per_1000: int) -> OpenOffer | None:
        credits = view.balances.get("credits", 0)
        candidates = [
            o
            for o in view.open_offers
            if o.resource == resource
            and o.seller != view.agent
            and o.account != view.account
            and o.offer_id not in self._tried_offers
            and o.turn in (None, view.agent)  # a negotiation only on our turn
            and o.open_until_tick >= view.tick
            and o.quantity > 0
            and o.price <= credits
            and o.price * 1000 <= limit_per_1000 * o.quantity
        ]
        return min(candidates, key=lambda o: (_unit_price(o), o.price, o.offer_id), default=None)

    def _cancel_stale(self, view: AgentView, own: dict[str, OpenOffer]) -> Intent | None:
        for resource in RESOURCES_TRADED:
            offer, seen = own.get(resource), self._own_seen.get(resource)
            if offer is None or seen is None or view.tick - seen[1] < OFFER_STALE_TICKS:
                continue
            self._cancelled.append(offer.offer_id)
            steps = self._undercut_steps.get(resource, 0) + 1
            self._undercut_steps[resource] = min(steps, UNDERCUT_STEPS_MAX)
            return Intent(
                action="cancel",
                resource=resource,
                offer_id=offer.offer_id,
                rationale=f"offer {offer.offer_id} unmatched for {view.tick - seen[1]} ticks: re-offer cheaper",
            )
        return None

    def _sell(self, view: AgentView, own: dict[str, OpenOffer]) -> Intent | None:
        for resource in RESOURCES_TRADED:
            if resource in own or self._offer_pending(view, resource) or _need(view, resource) > 0:
                continue
            balance = view.balances.get(resource, 0)
            surplus = balance - RESERVE_TICKS * view.expected_consumption.get(resource, 0)
            quantity = self._offer_quantity(view, resource, min(surplus, balance))
            if quantity < 1:
                continue
            price = self._offer_price(view, resource, quantity)
            self._posted_tick[resource] = view.tick
            return Intent(
                action="offer",
                resource=resource,
                quantity=quantity,
                price=price,
                open_for_ticks=OFFER_OPEN_TICKS,
                rationale=(
                    f"long {resource}: {surplus} above a {RESERVE_TICKS}-tick reserve; "
                    f"offering {quantity} for {price} mc"
                ),
            )
        return None

    def _offer_pending(self, view: AgentView, resource: str) -> bool:
        posted = self._posted_tick.get(resource)
        return posted is not None and view.tick - posted < OFFER_VISIBLE_WAIT_TICKS

    def _offer_quantity(self, view: AgentView, resource: str, surplus: int) -> int:
        if surplus < 1:
            return 0
        part_pct = self._rng.randint(OFFER_SURPLUS_PCT_MIN, OFFER_SURPLUS_PCT_MAX)
        size_pct = self._size_pct.get(resource, SIZE_PCT_FULL)
        quantity = max(1, surplus * part_pct // 100 * size_pct // 100)
        cap = view.trade_quantity_max.get(resource)
        if cap is not None:
            quantity = min(quantity, cap)
        return min(quantity, surplus, QUANTITY_MAX)

    def _offer_price(self, view: AgentView, resource: str, quantity: int) -> int:
        ceiling_per_1000 = view.price_ceiling.get(resource)
        jitter_pct = self._rng.randint(-PRICE_JITTER_PCT, PRICE_JITTER_PCT)
        if ceiling_per_1000 is None:
            self._price_at_ceiling.discard(resource)
            base_per_1000 = REFERENCE_PRICE_PER_1000[resource]
        elif resource in self._price_at_ceiling:
            self._price_at_ceiling.discard(resource)
            return min(ceiling_per_1000 * quantity // 1000, QUANTITY_MAX)
        else:
            # Undercut from the ceiling when it is below the reference, or undercutting never bites.
            base_per_1000 = min(REFERENCE_PRICE_PER_1000[resource], ceiling_per_1000)
        price_pct = 100 - self._undercut_steps.get(resource, 0) * UNDERCUT_STEP_PCT + jitter_pct
        price = max(1, base_per_1000 * quantity * price_pct // 100_000)
        if ceiling_per_1000 is not None:
            price = min(price, ceiling_per_1000 * quantity // 1000)
        return min(price, QUANTITY_MAX)


def _need(view: AgentView, resource: str) -> int:
    """Units it is short of: below SHORT_TICKS of consumption, plus last tick's unmet demand."""
    balance = view.balances.get(resource, 0)
    target = SHORT_TICKS * view.expected_consumption.get(resource, 0)
    shortfall = view.shortfall.get(resource, 0)
    if balance >= target and shortfall <= 0:
        return 0
    return max(target - balance, 0) + max(shortfall, 0)
