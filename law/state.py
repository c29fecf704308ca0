"""The state the law decides against, and ``apply`` — the fold step.

State grows with participants, open offers and resting orders, never with history: each agent's last
decided nonce is one number (a proposal whose nonce is not above it was decided already), offers
leave the state when accepted, cancelled, past their last open tick, or when their seller is
suspended, and orders when filled, cancelled, expired, their agent suspended or the breaker tripped.

``apply`` consumes its input for speed (the validator folds tens of thousands of entries a second):
it mutates and returns the same object. ``decide`` never mutates. Use ``State.copy()`` where a caller
needs the old state too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from law.policy import DEFAULT_POLICY

SYSTEM_GENESIS = "system:genesis"
SYSTEM_PRODUCTION = "system:production"
SYSTEM_CONSUMPTION = "system:consumption"
SYSTEM_TREASURY = "system:treasury"
# Holds what resting orders reserve (a bid's credits, an ask's resource) until a fill or a release pays
# it out: TigerBeetle's pending transfers, as ordinary double-entry postings.
SYSTEM_ESCROW = "system:escrow"


@dataclass(slots=True)
class AgentInfo:
    role: str
    # Participants and the meter: the fingerprint of the HMAC key of generation ``key_generation``.
    # Operators: their Ed25519 public key instead.
    key_fingerprint: str | None
    accounts: tuple[str, ...]
    kind: str = "generic"
    emits_carbon: bool = False
    critical_load: bool = False
    suspended: bool = False
    public_key: str | None = None
    key_generation: int = 0


@dataclass(frozen=True, slots=True)
class OpenOffer:
    offer_id: str
    seller: str
    account: str
    resource: str
    quantity: int
    price: int
    open_until_tick: int
    # A negotiation (an offer addressed to one agent): who may move next, the buyer's account once it
    # countered, and how many counters so far. None/0 on an offer to anyone.
    to_agent: str | None = None
    turn: str | None = None
    buyer_account: str | None = None
    rounds: int = 0


@dataclass(frozen=True, slots=True)
class Order:
    """A resting bid or ask of the order book (``law.book``)."""

    order_id: str
    agent: str
    account: str
    side: str  # "bid" or "ask"
    resource: str
    quantity: int  # still to fill
    price: int  # the limit, in millicredits per PRICE_QUOTE_UNITS units
    open_until_tick: int
    arrival: int  # the seq of the entry that placed it: time priority among equal prices
    reserved: int  # still in escrow: credits for a bid, the resource for an ask
    value_filled: int = 0  # a bid's sum of fill quantity x price, for the rounding of its payments


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Grid health after the last meter entry; the breaker and the price ceilings read it."""

    energy_reserve: int = 0
    energy_demand: int = 0
    reserve_permille: int = 0
    critical_shortfall: int = 0
    total_shortfall: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "energy_reserve": self.energy_reserve,
            "energy_demand": self.energy_demand,
            "reserve_permille": self.reserve_permille,
            "critical_shortfall": self.critical_shortfall,
            "total_shortfall": self.total_shortfall,
        }


@dataclass(slots=True)
class State:
    seq_next: int = 0
    tick: int = 0
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    account_owner: dict[str, str] = field(default_factory=dict)
    agents: dict[str, AgentInfo] = field(default_factory=dict)
    offers: dict[str, OpenOffer] = field(default_factory=dict)
    # Open offers per seller: an index of ``offers`` so the per-agent limit is O(1).
    offers_by_seller: dict[str, int] = field(default_factory=dict)
    # The order book: resting bids and asks, and their count per agent (for its limit).
    orders: dict[str, Order] = field(default_factory=dict)
    orders_by_agent: dict[str, int] = field(default_factory=dict)
    # Agent -> the nonce of its last decided proposal, accepted or rejected once authenticated.
    nonces: dict[str, int] = field(default_factory=dict)
    # Accepted proposals per agent in the current tick, and of all agents (the rate limits count these).
    tick_counts: dict[str, int] = field(default_factory=dict)
    tick_count_total: int = 0
    # Unmet demand from the last meter entry, per (account, resource).
    shortfall: dict[tuple[str, str], int] = field(default_factory=dict)
    telemetry: Telemetry = field(default_factory=Telemetry)
    policy: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    policy_version: int = 0
    breaker_open: bool = False
    breaker_reason: str = ""
    breaker_grace_until_tick: int = -1
    # The seq of the entry that opened the breaker (-1 when it never opened): a resume must name it.
    breaker_trip_seq: int = -1
    # Policy parameters held fixed whatever the log sets: only a counterfactual replay sets these
    # (``streams.counterfactual``), to decide the same proposals under, say, another market mechanism.
    # Never in a snapshot: a live ledger is decided with none.
    policy_pins: dict[str, int] = field(default_factory=dict)

    @classmethod
    def pinned(cls, pins: dict[str, int]) -> State:
        """An empty state whose ``pins`` hold whatever policy the log sets (a counterfactual's)."""
        return cls(policy={**DEFAULT_POLICY, **pins}, policy_pins=dict(pins))

    def copy(self) -> State:
        return copy.deepcopy(self)

    def balance(self, account: str, resource: str) -> int:
        return self.balances.get((account, resource), 0)

    @property
    def stressed(self) -> bool:
        threshold = self.policy["stress_reserve_permille"]
        return threshold > 0 and self.telemetry.energy_demand > 0 and (self.telemetry.reserve_permille < threshold)


# The decisions are msgspec Structs, not frozen dataclasses: one is built per proposal
# (``law.ledger.Entry`` says why).


class Accepted(msgspec.Struct, frozen=True):
    """A decision to append an entry. Everything ``apply`` needs, and nothing it must recompute."""

    proposal_id: str
    agent: str
    nonce: int
    kind: str
    tick: int
    expires_tick: int
    postings: tuple[tuple[str, str, int], ...]
    effects: tuple[dict[str, Any], ...]
    policy_version: int  # the version in force when decided


class Rejected(msgspec.Struct, frozen=True):
    reason_code: str
    detail: str
    field: str | None = None
    # True when the proposal was authenticated before it was refused: its nonce is then used up
    # (``consume``), so the same signed bytes can never be decided again, accepted or not.
    consumes_nonce: bool = False


def apply(state: State, entry: Accepted) -> State:
    """Fold one accepted entry into the state (mutating it) and return it."""
    for account, resource, amount in entry.postings:
        key = (account, resource)
        state.balances[key] = state.balances.get(key, 0) + amount
    for effect in entry.effects:
        EFFECTS[effect["t"]](state, effect)
    consume(state, entry.agent, entry.nonce)
    state.tick_counts[entry.agent] = state.tick_counts.get(entry.agent, 0) + 1
    state.tick_count_total += 1
    state.seq_next += 1
    return state


def consume(state: State, agent: str, nonce: int) -> State:
    """Record that ``agent``'s proposal ``nonce`` was decided (accepted, or refused once authenticated)."""
    if nonce > state.nonces.get(agent, 0):
        state.nonces[agent] = nonce
    return state


def balances_after(state: State, postings: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    """The balances ``postings`` touch, as they would be after all of them."""
    after: dict[tuple[str, str], int] = {}
    for account, resource, amount in postings:
        key = (account, resource)
        after[key] = after.get(key, state.balance(account, resource)) + amount
    return after


def overdrawn(state: State, postings: Iterable[tuple[str, str, int]]) -> tuple[str, str, int] | None:
    """The first participant (account, resource, balance) that ``postings`` would leave negative.
    System accounts are the grid's counterparty and may go negative, within the bound."""
    return negative(state, balances_after(state, postings))


def negative(state: State, after: dict[tuple[str, str], int]) -> tuple[str, str, int] | None:
    """The first participant's balance of ``after`` (``balances_after``) below zero."""
    return next(((a, r, v) for (a, r), v in after.items() if v < 0 and a in state.account_owner), None)


def inconsistency(state: State, entry: Accepted) -> str | None:
    """Why ``entry`` cannot follow ``state`` (None when it can): the check an audit runs before
    ``apply``, so a ledger with an entry removed or edited is reported instead of crashing the fold."""
    short = overdrawn(state, entry.postings)
    if short is not None:
        return f"{short[0]} would hold {short[2]} {short[1]}"
    for effect in entry.effects:
        problem = _effect_problem(state, effect)
        if problem is not None:
            return problem
    return None


def _effect_problem(state: State, effect: dict[str, Any]) -> str | None:
    kind = effect["t"]
    if kind == "offer_close" and effect["offer_id"] not in state.offers:
        return f"closes offer {effect['offer_id']!r}, which is not open"
    if kind == "offer_counter" and effect["offer_id"] not in state.offers:
        return f"counters offer {effect['offer_id']!r}, which is not open"
    if kind == "offer_open" and effect["offer_id"] in state.offers:
        return f"opens offer {effect['offer_id']!r} twice"
    if kind in ("order_open", "fill", "order_close"):
        return _order_effect_problem(state, effect)
    if kind in ("suspend", "rekey") and effect["agent"] not in state.agents:
        return f"{kind} of unknown agent {effect['agent']!r}"
    if kind == "register" and effect["participant"]["agent"] in state.agents:
        return f"registers {effect['participant']['agent']!r} twice"
    return None


def _order_effect_problem(state: State, effect: dict[str, Any]) -> str | None:
    kind = effect["t"]
    if kind == "order_open":
        return f"opens order {effect['order_id']!r} twice" if effect["order_id"] in state.orders else None
    order = state.orders.get(effect["order_id"] if kind == "order_close" else effect["maker"])
    if order is None:
        return f"{kind} of order {effect.get('order_id', effect.get('maker'))!r}, which is not resting"
    resting = [order] + ([state.orders[effect["taker"]]] if kind == "fill" and effect["taker"] in state.orders else [])
    short = next((o for o in resting if kind == "fill" and effect["quantity"] > o.quantity), None)
    if short is not None:
        return f"fills {effect['quantity']} of order {short.order_id!r}, which has {short.quantity} left"
    return None


def _advance_tick(state: State, effect: dict[str, Any]) -> None:
    new_tick = effect["tick"]
    for offer_id in [o.offer_id for o in state.offers.values() if o.open_until_tick < new_tick]:
        _drop_offer(state, offer_id)
    state.tick_counts.clear()
    state.tick_count_total = 0
    state.tick = new_tick


def _register(state: State, effect: dict[str, Any]) -> None:
    p = effect["participant"]
    state.agents[p["agent"]] = AgentInfo(
        role=p["role"],
        key_fingerprint=p["key_fingerprint"],
        accounts=tuple(p["accounts"]),
        kind=p["kind"],
        emits_carbon=p["emits_carbon"],
        critical_load=p["critical_load"],
        public_key=p["public_key"],
    )
    for account in p["accounts"]:
        state.account_owner[account] = p["agent"]


def _rekey(state: State, effect: dict[str, Any]) -> None:
    agent = state.agents[effect["agent"]]
    if "public_key" in effect:
        agent.public_key = effect["public_key"]
    else:
        agent.key_fingerprint, agent.key_generation = effect["key_fingerprint"], effect["generation"]


def _suspend(state: State, effect: dict[str, Any]) -> None:
    """A suspended agent trades no more: its open offers close with it, so nobody can take them."""
    state.agents[effect["agent"]].suspended = True
    for offer_id in [o.offer_id for o in state.offers.values() if o.seller == effect["agent"]]:
        _drop_offer(state, offer_id)


def _offer_open(state: State, effect: dict[str, Any]) -> None:
    state.offers[effect["offer_id"]] = OpenOffer(
        offer_id=effect["offer_id"],
        seller=effect["seller"],
        account=effect["account"],
        resource=effect["resource"],
        quantity=effect["quantity"],
        price=effect["price"],
        open_until_tick=effect["open_until_tick"],
        to_agent=effect.get("to_agent"),
        turn=effect.get("to_agent"),  # the addressee moves first
    )
    state.offers_by_seller[effect["seller"]] = state.offers_by_seller.get(effect["seller"], 0) + 1


def _offer_counter(state: State, effect: dict[str, Any]) -> None:
    offer = state.offers[effect["offer_id"]]
    terms = {k: effect[k] for k in ("quantity", "price", "turn", "buyer_account", "rounds")}
    state.offers[offer.offer_id] = replace(offer, **terms)


def _offer_close(state: State, effect: dict[str, Any]) -> None:
    _drop_offer(state, effect["offer_id"])


def _drop_offer(state: State, offer_id: str) -> None:
    seller = state.offers.pop(offer_id).seller
    remaining = state.offers_by_seller[seller] - 1
    if remaining:
        state.offers_by_seller[seller] = remaining
    else:
        del state.offers_by_seller[seller]


def _order_open(state: State, effect: dict[str, Any]) -> None:
    order = Order(**{k: v for k, v in effect.items() if k != "t"})
    state.orders[order.order_id] = order
    state.orders_by_agent[order.agent] = state.orders_by_agent.get(order.agent, 0) + 1


def _fill(state: State, effect: dict[str, Any]) -> None:
    """A fill's resting sides: the maker, and the taker too when it rests (a uniform-price clearing
    fills two resting orders; a continuous taker rests afterwards, if at all, by its own order_open)."""
    for order_id in (effect["maker"], effect["taker"]):
        order = state.orders.get(order_id)
        if order is None:
            continue
        quantity = effect["quantity"]
        paid = effect["payment"] if order.side == "bid" else quantity
        value = quantity * effect["price"] if order.side == "bid" else 0
        state.orders[order_id] = replace(
            order,
            quantity=order.quantity - quantity,
            reserved=order.reserved - paid,
            value_filled=order.value_filled + value,
        )


def _order_close(state: State, effect: dict[str, Any]) -> None:
    agent = state.orders.pop(effect["order_id"]).agent
    remaining = state.orders_by_agent[agent] - 1
    if remaining:
        state.orders_by_agent[agent] = remaining
    else:
        del state.orders_by_agent[agent]


def _shortfall(state: State, effect: dict[str, Any]) -> None:
    state.shortfall = {(a, r): units for a, r, units in effect["units"]}


def _telemetry(state: State, effect: dict[str, Any]) -> None:
    state.telemetry = Telemetry(**effect["values"])


def _policy(state: State, effect: dict[str, Any]) -> None:
    state.policy.update(effect["params"])
    state.policy.update(state.policy_pins)
    state.policy_version += 1


def _breaker(state: State, effect: dict[str, Any]) -> None:
    state.breaker_open = effect["open"]
    state.breaker_reason = effect["reason"]
    if effect["open"]:
        state.breaker_trip_seq = state.seq_next  # effects apply before seq_next moves past this entry
    else:
        state.breaker_grace_until_tick = state.tick + state.policy["breaker_grace_ticks"]


EFFECTS = {
    "tick": _advance_tick,
    "register": _register,
    "suspend": _suspend,
    "rekey": _rekey,
    "offer_open": _offer_open,
    "offer_close": _offer_close,
    "offer_counter": _offer_counter,
    "order_open": _order_open,
    "fill": _fill,
    "order_close": _order_close,
    "clearing": lambda state, effect: None,  # a record for readers: the fills beside it change the book
    "shortfall": _shortfall,
    "telemetry": _telemetry,
    "policy": _policy,
    "breaker": _breaker,
}
