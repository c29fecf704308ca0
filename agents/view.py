"""What one agent may see when it decides: its own balances and rejections, the open offers, and a
compact grid summary. Built by the agent runner from Postgres/Kafka; strategies never do I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OpenOffer:
    offer_id: str
    seller: str  # agent id
    account: str
    resource: str  # energy | water | credits
    quantity: int  # fixed-point units (energy Wh, water litre)
    price: int  # total price in millicredits for the whole quantity
    open_until_tick: int
    to_agent: str | None = None  # a negotiation addressed to this agent, or None: to anyone
    turn: str | None = None  # in a negotiation: who moves next


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """One of the agent's own bids or asks resting in the book."""

    order_id: str
    side: str  # bid | ask
    resource: str
    quantity: int  # still to fill
    price: int  # limit, millicredits per 1,000 units
    open_until_tick: int


@dataclass(frozen=True, slots=True)
class RecentRejection:
    proposal_id: str
    kind: str
    reason_code: str  # e.g. INSUFFICIENT_BALANCE, PRICE_CEILING, OFFER_NOT_OPEN, CIRCUIT_OPEN
    detail: str


@dataclass(frozen=True, slots=True)
class AgentView:
    agent: str
    participant_kind: str  # solar_farm, hospital, ...
    account: str  # the agent's main account (the only one it trades from)
    tick: int  # the grid tick the agent last saw
    balances: dict[str, int]  # resource -> units on the agent's account
    # Per tick, from the scenario profile: what it expects to produce and consume (units).
    expected_production: dict[str, int]
    expected_consumption: dict[str, int]
    shortfall: dict[str, int]  # resource -> units of demand unmet last tick
    open_offers: tuple[OpenOffer, ...]  # everyone's, own included
    recent_rejections: tuple[RecentRejection, ...] = ()
    breaker_open: bool = False
    price_ceiling: dict[str, int] = field(default_factory=dict)  # millicredits per 1,000 units
    trade_quantity_max: dict[str, int] = field(default_factory=dict)
    own_orders: tuple[RestingOrder, ...] = ()
    # resource -> (best bid, best ask) of the others' resting orders, per 1,000 units (None: none)
    quotes: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
