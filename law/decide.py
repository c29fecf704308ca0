"""The law: ``decide(state, decoded, position, keys) -> Accepted | Rejected``.

Pure: no clock, randomness or I/O. The grid's time is the tick carried by the operator's meter
entries; the Kafka offset (``position``) is the only ordering. Business outcomes are return values;
an exception here is a bug, never a verdict.

Checks run in a fixed order so the same bad proposal always gets the same reason: identity and
signature first (an unauthenticated sender learns nothing else), then replay and expiry, then role,
breaker and rate limit, then the kind's own rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from law.policy import BPS_DENOMINATOR, PERMILLE_DENOMINATOR, PRICE_QUOTE_UNITS, invalid_param
from law.state import (
    SYSTEM_CONSUMPTION,
    SYSTEM_GENESIS,
    SYSTEM_PRODUCTION,
    SYSTEM_TREASURY,
    Accepted,
    Rejected,
    State,
    Telemetry,
)
from schemas.codec import Decoded, signature_valid
from schemas.proposal import (
    GOVERNANCE_KINDS,
    TRADE_KINDS,
    Accept,
    BreakerResume,
    BreakerTrip,
    Cancel,
    Genesis,
    Meter,
    Offer,
    ParticipantAdd,
    ParticipantSuspend,
    PolicySet,
    Proposal,
    Transfer,
)

# A proposal may be valid for at most this many ticks: this bounds the ids kept for duplicate checks.
EXPIRY_WINDOW_TICKS_MAX = 100
OFFER_OPEN_TICKS_MAX = 100
OPEN_OFFERS_PER_AGENT_MAX = 16
OPEN_OFFERS_COUNT_MAX = 10_000
OPERATOR_ONLY_KINDS = GOVERNANCE_KINDS | {"meter"}

Keys = Mapping[str, bytes]  # key fingerprint -> HMAC key
Decision = Accepted | Rejected
Postings = list[tuple[str, str, int]]


def decide(state: State, decoded: Decoded, position: int, keys: Keys) -> Decision:
    """Decide one proposal read at Kafka offset ``position`` against ``state``."""
    del position  # the order is the caller's; no rule depends on the offset's value
    p = decoded.proposal
    if state.seq_next == 0:
        return _decide_genesis(p, decoded, keys)
    if isinstance(p.body, Genesis):
        return Rejected("UNAUTHORIZED", "the ledger already has its genesis entry", "body.kind")
    gate = _gate(state, p, decoded, keys)
    if gate is not None:
        return gate
    return _RULES[p.body.kind](state, p)


def _gate(state: State, p: Proposal, decoded: Decoded, keys: Keys) -> Rejected | None:
    agent = state.agents.get(p.agent)
    if agent is None:
        return Rejected("UNKNOWN_AGENT", f"agent {p.agent!r} is not registered", "agent")
    key = keys.get(agent.key_fingerprint)
    if key is None or not signature_valid(decoded.signed_bytes, decoded.sig, key):
        return Rejected("BAD_SIGNATURE", f"signature does not verify for agent {p.agent!r}", "sig")
    if agent.suspended:
        return Rejected("SUSPENDED", f"agent {p.agent!r} is suspended", "agent")
    if p.id in state.seen:
        return Rejected("DUPLICATE_PROPOSAL", f"proposal id {p.id!r} was already accepted", "id")
    expiry = _expiry_problem(state, p)
    if expiry is not None:
        return expiry
    kind = p.body.kind
    if kind in OPERATOR_ONLY_KINDS and agent.role != "operator":
        return Rejected("UNAUTHORIZED", f"{kind} is reserved to operators", "body.kind")
    if kind in TRADE_KINDS and state.breaker_open:
        return Rejected("CIRCUIT_OPEN", f"circuit breaker open: {state.breaker_reason}", None)
    limit = state.policy["proposals_per_tick_max"]
    if kind in TRADE_KINDS and limit and state.tick_counts.get(p.agent, 0) >= limit:
        return Rejected("RATE_LIMITED", f"{limit} proposals per tick already accepted for {p.agent!r}")
    return None


def _expiry_problem(state: State, p: Proposal) -> Rejected | None:
    if p.expires_tick < p.tick:
        return Rejected("MALFORMED", "expires_tick is before tick", "expires_tick")
    if p.expires_tick < state.tick:
        return Rejected("EXPIRED", f"expired at tick {p.expires_tick}; grid is at {state.tick}", "expires_tick")
    if p.expires_tick > state.tick + EXPIRY_WINDOW_TICKS_MAX:
        return Rejected(
            "LIMIT_EXCEEDED",
            f"expires_tick {p.expires_tick} beyond {EXPIRY_WINDOW_TICKS_MAX} ticks from {state.tick}",
            "expires_tick",
        )
    return None


def _accept(state: State, p: Proposal, postings: Postings, effects: list[dict[str, Any]]) -> Accepted:
    return Accepted(
        proposal_id=p.id,
        agent=p.agent,
        kind=p.body.kind,
        tick=p.tick,
        expires_tick=p.expires_tick,
        postings=tuple(postings),
        effects=tuple(effects),
        policy_version=state.policy_version,
    )


# --- genesis -------------------------------------------------------------------------------------


def _decide_genesis(p: Proposal, decoded: Decoded, keys: Keys) -> Decision:
    body = p.body
    if not isinstance(body, Genesis):
        return Rejected("GENESIS_REQUIRED", "the first ledger entry must be a genesis", "body.kind")
    signer = next((x for x in body.participants if x.agent == p.agent), None)
    if signer is None or signer.role != "operator":
        return Rejected("UNAUTHORIZED", "genesis must be signed by an operator it registers", "agent")
    key = keys.get(signer.key_fingerprint)
    if key is None or not signature_valid(decoded.signed_bytes, decoded.sig, key):
        return Rejected("BAD_SIGNATURE", f"signature does not verify for agent {p.agent!r}", "sig")
    problem = _registry_problem(body)
    if problem is not None:
        return problem
    bad_policy = invalid_param(body.policy)
    if bad_policy is not None:
        return Rejected("BAD_POLICY", bad_policy[1], f"body.policy.{bad_policy[0]}")
    effects: list[dict[str, Any]] = [{"t": "register", "participant": x.model_dump()} for x in body.participants]
    effects.append({"t": "policy", "params": dict(sorted(body.policy.items()))})
    postings: Postings = []
    for opening in body.balances:
        postings += [
            (SYSTEM_GENESIS, opening.resource, -opening.quantity),
            (opening.account, opening.resource, opening.quantity),
        ]
    effects.append({"t": "tick", "tick": p.tick})
    return _accept(State(), p, postings, effects)


def _registry_problem(body: Genesis) -> Rejected | None:
    agents = [x.agent for x in body.participants]
    accounts = [a for x in body.participants for a in x.accounts]
    if len(set(agents)) != len(agents):
        return Rejected("MALFORMED", "an agent is registered twice", "body.participants")
    if len(set(accounts)) != len(accounts) or any(a.startswith("system:") for a in accounts):
        return Rejected("MALFORMED", "accounts must be unique and outside system:", "body.participants")
    unknown = next((o.account for o in body.balances if o.account not in set(accounts)), None)
    if unknown is not None:
        return Rejected("UNKNOWN_ACCOUNT", f"opening balance for unregistered account {unknown!r}", "body.balances")
    return None


# --- trades --------------------------------------------------------------------------------------


def _owned_account(state: State, agent: str, account: str, field: str) -> Rejected | None:
    owner = state.account_owner.get(account)
    if owner is None:
        return Rejected("UNKNOWN_ACCOUNT", f"account {account!r} does not exist", field)
    if owner != agent:
        return Rejected("NOT_OWNER", f"account {account!r} belongs to {owner!r}, not {agent!r}", field)
    return None


def _cap_problem(state: State, resource: str, quantity: int) -> Rejected | None:
    cap = state.policy[f"trade_quantity_max_{resource}"]
    if quantity > cap:
        return Rejected("POLICY_CAP", f"quantity {quantity} above the {resource} cap {cap}", "body.quantity")
    return None


def price_ceiling(state: State, resource: str) -> int:
    """Millicredits per 1,000 units in force now (0 = none); tightened, floor, when stressed."""
    ceiling = state.policy.get(f"price_ceiling_{resource}", 0)
    if ceiling and state.stressed:
        ceiling = max(1, ceiling * state.policy["stressed_ceiling_pct"] // 100)
    return ceiling


def _ceiling_problem(state: State, resource: str, quantity: int, price: int) -> Rejected | None:
    ceiling = price_ceiling(state, resource)
    # Compare price/quantity with ceiling/1000 without dividing: exact in integers.
    if ceiling and price * PRICE_QUOTE_UNITS > ceiling * quantity:
        unit_price = price * PRICE_QUOTE_UNITS // quantity
        return Rejected(
            "PRICE_CEILING",
            f"{unit_price} millicredits per 1000 {resource} above the ceiling {ceiling}",
            "body.price",
        )
    return None


def _funds_problem(state: State, account: str, resource: str, quantity: int, who: str) -> Rejected | None:
    held = state.balance(account, resource)
    if held < quantity:
        return Rejected(
            "INSUFFICIENT_BALANCE",
            f"{who} {account!r} holds {held} {resource}, needs {quantity}",
            "body.quantity",
        )
    return None


def _decide_transfer(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Transfer)
    problem = (
        _owned_account(state, p.agent, body.from_account, "body.from_account")
        or _known_account(state, body.to_account)
        or _self_transfer(body)
        or _cap_problem(state, body.resource, body.quantity)
        or _funds_problem(state, body.from_account, body.resource, body.quantity, "account")
    )
    if problem is not None:
        return problem
    postings: Postings = [
        (body.from_account, body.resource, -body.quantity),
        (body.to_account, body.resource, body.quantity),
    ]
    return _accept(state, p, postings, [])


def _known_account(state: State, account: str) -> Rejected | None:
    if account not in state.account_owner:
        return Rejected("UNKNOWN_ACCOUNT", f"account {account!r} does not exist", "body.to_account")
    return None


def _self_transfer(body: Transfer) -> Rejected | None:
    if body.from_account == body.to_account:
        return Rejected("SELF_TRADE", "transfer to the same account", "body.to_account")
    return None


def _decide_offer(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Offer)
    problem = (
        _owned_account(state, p.agent, body.account, "body.account")
        or _offer_shape_problem(state, p, body)
        or _cap_problem(state, body.resource, body.quantity)
        or _ceiling_problem(state, body.resource, body.quantity, body.price)
        or _funds_problem(state, body.account, body.resource, body.quantity, "seller")
    )
    if problem is not None:
        return problem
    effect = {
        "t": "offer_open",
        "offer_id": p.id,
        "seller": p.agent,
        "account": body.account,
        "resource": body.resource,
        "quantity": body.quantity,
        "price": body.price,
        "open_until_tick": body.open_until_tick,
    }
    return _accept(state, p, [], [effect])


def _offer_shape_problem(state: State, p: Proposal, body: Offer) -> Rejected | None:
    if body.resource == "credits":
        return Rejected("MALFORMED", "credits are the price, not a tradable good", "body.resource")
    if body.open_until_tick < state.tick:
        return Rejected(
            "EXPIRED",
            f"offer closes at {body.open_until_tick}, before tick {state.tick}",
            "body.open_until_tick",
        )
    if body.open_until_tick > state.tick + OFFER_OPEN_TICKS_MAX:
        return Rejected(
            "LIMIT_EXCEEDED", f"offers stay open at most {OFFER_OPEN_TICKS_MAX} ticks", "body.open_until_tick"
        )
    own = state.offers_by_seller.get(p.agent, 0)
    if own >= OPEN_OFFERS_PER_AGENT_MAX or len(state.offers) >= OPEN_OFFERS_COUNT_MAX:
        return Rejected("LIMIT_EXCEEDED", f"too many open offers ({own} own, {len(state.offers)} total)", None)
    return None


def _decide_accept(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Accept)
    offer = state.offers.get(body.offer_id)
    if offer is None or offer.open_until_tick < state.tick:
        return Rejected("OFFER_NOT_OPEN", f"offer {body.offer_id!r} is not open", "body.offer_id")
    problem = (
        _owned_account(state, p.agent, body.account, "body.account")
        or (
            Rejected("SELF_TRADE", "cannot accept one's own offer", "body.offer_id")
            if offer.seller == p.agent
            else None
        )
        or _ceiling_problem(state, offer.resource, offer.quantity, offer.price)
        or _funds_problem(state, body.account, "credits", offer.price, "buyer")
        or _funds_problem(state, offer.account, offer.resource, offer.quantity, "seller")
    )
    if problem is not None:
        return problem
    postings: Postings = [
        (offer.account, offer.resource, -offer.quantity),
        (body.account, offer.resource, offer.quantity),
        (body.account, "credits", -offer.price),
        (offer.account, "credits", offer.price),
    ]
    tax = _carbon_tax(state, offer.seller, offer.resource, offer.price)
    if tax:
        postings += [(offer.account, "credits", -tax), (SYSTEM_TREASURY, "credits", tax)]
    return _accept(state, p, postings, [{"t": "offer_close", "offer_id": offer.offer_id, "why": "accepted"}])


def _carbon_tax(state: State, seller: str, resource: str, price: int) -> int:
    if resource != "energy" or not state.agents[seller].emits_carbon:
        return 0
    return price * state.policy["carbon_tax_bps"] // BPS_DENOMINATOR


def _decide_cancel(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Cancel)
    offer = state.offers.get(body.offer_id)
    if offer is None or offer.open_until_tick < state.tick:
        return Rejected("OFFER_NOT_OPEN", f"offer {body.offer_id!r} is not open", "body.offer_id")
    if offer.seller != p.agent:
        return Rejected("NOT_OWNER", f"offer {body.offer_id!r} belongs to {offer.seller!r}", "body.offer_id")
    return _accept(state, p, [], [{"t": "offer_close", "offer_id": offer.offer_id, "why": "cancelled"}])


# --- metering: the grid's clock ------------------------------------------------------------------


def _decide_meter(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Meter)
    if p.tick < state.tick:
        return Rejected("EXPIRED", f"meter reading for tick {p.tick}; grid is at {state.tick}", "tick")
    unknown = next((r.account for r in body.readings if r.account not in state.account_owner), None)
    if unknown is not None:
        return Rejected("UNKNOWN_ACCOUNT", f"reading for unknown account {unknown!r}", "body.readings")
    postings, shortfall, demand = _meter_postings(state, body)
    postings += _interest_postings(state, p.tick, postings)
    telemetry = _telemetry_after(state, postings, shortfall, demand)
    effects: list[dict[str, Any]] = []
    if p.tick > state.tick:
        effects.append({"t": "tick", "tick": p.tick})
    effects.append({"t": "shortfall", "units": [[a, r, u] for (a, r), u in sorted(shortfall.items())]})
    effects.append({"t": "telemetry", "values": telemetry.as_dict()})
    trip = _auto_trip(state, p.tick, telemetry)
    if trip is not None:
        effects.append(trip)
    return _accept(state, p, postings, effects)


def _meter_postings(state: State, body: Meter) -> tuple[Postings, dict[tuple[str, str], int], int]:
    """Production first, then consumption served from what the account then holds; the rest is unmet."""
    held: dict[tuple[str, str], int] = {}
    postings: Postings = []
    shortfall: dict[tuple[str, str], int] = {}
    energy_demand = 0
    for r in body.readings:
        key = (r.account, r.resource)
        available = held.get(key, state.balance(r.account, r.resource)) + r.produced
        served = min(available, r.consumed)
        held[key] = available - served
        if r.produced:
            postings += [(SYSTEM_PRODUCTION, r.resource, -r.produced), (r.account, r.resource, r.produced)]
        if served:
            postings += [(r.account, r.resource, -served), (SYSTEM_CONSUMPTION, r.resource, served)]
        if r.consumed > served:
            shortfall[key] = shortfall.get(key, 0) + r.consumed - served
        if r.resource == "energy":
            energy_demand += r.consumed
    return postings, shortfall, energy_demand


def _interest_postings(state: State, new_tick: int, pending: Postings) -> Postings:
    """Interest on positive credit balances when ``new_tick`` enters a new interest period (floor)."""
    period, bps = state.policy["interest_period_ticks"], state.policy["interest_bps"]
    if not period or not bps or new_tick // period == state.tick // period:
        return []
    delta: dict[str, int] = {}
    for account, resource, amount in pending:
        if resource == "credits":
            delta[account] = delta.get(account, 0) + amount
    postings: Postings = []
    for account in sorted(state.account_owner):
        interest = (state.balance(account, "credits") + delta.get(account, 0)) * bps // BPS_DENOMINATOR
        if interest > 0:
            postings += [(SYSTEM_TREASURY, "credits", -interest), (account, "credits", interest)]
    return postings


def _telemetry_after(state: State, postings: Postings, shortfall: dict[tuple[str, str], int], demand: int) -> Telemetry:
    reserve = sum(v for (a, r), v in state.balances.items() if r == "energy" and a in state.account_owner)
    reserve += sum(amount for a, r, amount in postings if r == "energy" and a in state.account_owner)
    # Critical load is electrical (a hospital's theatres, not its laundry): only energy counts, in Wh.
    critical = sum(
        units
        for (account, resource), units in shortfall.items()
        if resource == "energy" and state.agents[state.account_owner[account]].critical_load
    )
    return Telemetry(
        energy_reserve=reserve,
        energy_demand=demand,
        # reserve over one tick's demand, per mille (floor); a tick with no demand reads as fully healthy.
        reserve_permille=reserve * PERMILLE_DENOMINATOR // demand if demand else 10**9,
        critical_shortfall=critical,
        total_shortfall=sum(shortfall.values()),
    )


def _auto_trip(state: State, tick: int, t: Telemetry) -> dict[str, Any] | None:
    if state.breaker_open or tick <= state.breaker_grace_until_tick:
        return None
    reserve_min = state.policy["breaker_reserve_min_permille"]
    critical_max = state.policy["breaker_critical_shortfall_max"]
    if reserve_min and t.energy_demand and t.reserve_permille < reserve_min:
        reason = f"energy reserve {t.reserve_permille}‰ of demand, below {reserve_min}‰"
    elif critical_max >= 0 and t.critical_shortfall > critical_max:
        reason = f"unmet critical load {t.critical_shortfall} Wh, above {critical_max} Wh"
    else:
        return None
    return {"t": "breaker", "open": True, "reason": reason, "by": "law", "telemetry": t.as_dict()}


# --- governance ----------------------------------------------------------------------------------


def _decide_policy_set(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, PolicySet)
    bad = invalid_param(body.params)
    if bad is not None:
        return Rejected("BAD_POLICY", bad[1], f"body.params.{bad[0]}")
    return _accept(state, p, [], [{"t": "policy", "params": dict(sorted(body.params.items())), "reason": body.reason}])


def _decide_breaker(state: State, p: Proposal) -> Decision:
    """A human trips or resumes the breaker; the telemetry at that moment travels with the entry."""
    body = p.body
    assert isinstance(body, BreakerTrip | BreakerResume)
    opening = isinstance(body, BreakerTrip)
    if state.breaker_open == opening:
        return Rejected("BREAKER_STATE", f"the breaker is already {'open' if opening else 'closed'}", "body.kind")
    effect = {
        "t": "breaker",
        "open": opening,
        "reason": body.reason,
        "by": p.agent,
        "telemetry": state.telemetry.as_dict(),
    }
    return _accept(state, p, [], [effect])


def _decide_participant_add(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, ParticipantAdd)
    new = body.participant
    if new.agent in state.agents:
        return Rejected("MALFORMED", f"agent {new.agent!r} already registered", "body.participant.agent")
    taken = next((a for a in new.accounts if a in state.account_owner or a.startswith("system:")), None)
    if taken is not None:
        return Rejected("MALFORMED", f"account {taken!r} is taken", "body.participant.accounts")
    return _accept(state, p, [], [{"t": "register", "participant": new.model_dump()}])


def _decide_participant_suspend(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, ParticipantSuspend)
    target = state.agents.get(body.agent)
    if target is None:
        return Rejected("UNKNOWN_AGENT", f"agent {body.agent!r} is not registered", "body.agent")
    if target.role == "operator":
        return Rejected("UNAUTHORIZED", "operators cannot be suspended by command", "body.agent")
    return _accept(state, p, [], [{"t": "suspend", "agent": body.agent, "reason": body.reason}])


_RULES: dict[str, Callable[[State, Proposal], Decision]] = {
    "transfer": _decide_transfer,
    "offer": _decide_offer,
    "accept": _decide_accept,
    "cancel": _decide_cancel,
    "meter": _decide_meter,
    "policy_set": _decide_policy_set,
    "breaker_trip": _decide_breaker,
    "breaker_resume": _decide_breaker,
    "participant_add": _decide_participant_add,
    "participant_suspend": _decide_participant_suspend,
}
