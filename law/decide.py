"""The law: ``decide(state, decoded, position, keys) -> Accepted | Rejected``.

Pure: no clock, randomness or I/O. The grid's time is the tick carried by the meter's entries; the
Kafka offset (``position``) is the only ordering. Business outcomes are return values; an exception
here is a bug, never a verdict.

Checks run in a fixed order so the same bad proposal always gets the same reason: identity and
signature first (an unauthenticated sender learns nothing else), then replay (the nonce) and expiry,
then role, breaker and rate limit, then the kind's own rule.

Each role signs only its own kinds: participants trade, the meter reads the grid, operators (people,
with Ed25519 keys the validator never holds) govern. A participant's key, whatever process holds it,
can therefore never change policy, the registry or the breaker.

Every decision of an authenticated proposal is final: accepted or refused, its nonce is used up
(``Rejected.consumes_nonce``), so re-sending the same signed bytes later is ``DUPLICATE_PROPOSAL``.
Whatever the database would refuse, a rule here refuses first (bounds in ``law.bounds``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from law import book
from law.bounds import beyond_bound, crossing, room_down, room_up
from law.policy import (
    BPS_DENOMINATOR,
    MARKET_CONTINUOUS,
    PERMILLE_DENOMINATOR,
    PRICE_QUOTE_UNITS,
    invalid_param,
)
from law.state import EFFECTS as _STATE_EFFECTS
from law.state import (
    SYSTEM_CONSUMPTION,
    SYSTEM_ESCROW,
    SYSTEM_GENESIS,
    SYSTEM_PRODUCTION,
    SYSTEM_TREASURY,
    Accepted,
    AgentInfo,
    OpenOffer,
    Order,
    Rejected,
    State,
    Telemetry,
    balances_after,
    negative,
)
from schemas.codec import Decoded
from schemas.proposal import (
    GOVERNANCE_KINDS,
    HMAC_ROLES,
    TRADE_KINDS,
    Accept,
    Ask,
    Bid,
    BreakerResume,
    BreakerTrip,
    Cancel,
    Counter,
    Genesis,
    Meter,
    Offer,
    Participant,
    ParticipantAdd,
    ParticipantRekey,
    ParticipantSuspend,
    PolicySet,
    Proposal,
    Reject,
    Transfer,
)
from schemas.signing import ed25519_valid, hmac_valid

# A proposal may be valid for at most this many ticks ahead of the grid: a signed intent goes stale.
EXPIRY_WINDOW_TICKS_MAX = 100
OFFER_OPEN_TICKS_MAX = 100
OPEN_OFFERS_PER_AGENT_MAX = 16
OPEN_OFFERS_COUNT_MAX = 10_000
NEGOTIATION_ROUNDS_MAX = 8  # counters per negotiation: a deadline in steps, besides its last tick
ROLE_KINDS = {"participant": TRADE_KINDS, "meter": frozenset({"meter"}), "operator": GOVERNANCE_KINDS}
RESERVE_PERMILLE_HEALTHY = 10**9


class Keys(Protocol):
    """What the law needs of the validator's keys; the validator's ``core.keyring`` provides it."""

    # Ed25519 public keys (hex) of the operators who may sign a ledger's genesis: without this list,
    # anyone could found a ledger on an empty topic with a key of their own.
    founders: frozenset[str]

    def hmac_key(self, agent: str, generation: int) -> tuple[bytes, str]:
        """The HMAC key of ``agent``'s key generation ``generation``, and its fingerprint."""
        ...


Decision = Accepted | Rejected
_ORDER_EFFECTS = {t: _STATE_EFFECTS[t] for t in ("fill", "order_close", "clearing")}
Postings = list[tuple[str, str, int]]


def decide(state: State, decoded: Decoded, position: int, keys: Keys) -> Decision:
    """Decide one proposal read at Kafka offset ``position`` against ``state``."""
    del position  # the order is the caller's; no rule depends on the offset's value
    p = decoded.proposal
    if state.seq_next == 0:
        return _decide_genesis(p, decoded, keys)
    unauthenticated = _authentication_problem(state, p, decoded, keys)
    if unauthenticated is not None:
        return unauthenticated
    last = state.nonces.get(p.agent, 0)
    if p.nonce <= last:
        return Rejected(
            "DUPLICATE_PROPOSAL", f"nonce {p.nonce} of {p.agent!r} was decided; the last is {last}", "nonce"
        )
    decision = _gate(state, p) or _rule(state, p, keys)
    if isinstance(decision, Rejected):
        return msgspec.structs.replace(decision, consumes_nonce=True)
    return decision


def _authentication_problem(state: State, p: Proposal, decoded: Decoded, keys: Keys) -> Rejected | None:
    agent = state.agents.get(p.agent)
    if agent is None:
        return Rejected("UNKNOWN_AGENT", f"agent {p.agent!r} is not registered", "agent")
    if not _signed_by(p.agent, agent, decoded, keys):
        return Rejected("BAD_SIGNATURE", f"signature does not verify for agent {p.agent!r}", "sig")
    return None


def _signed_by(name: str, agent: AgentInfo, decoded: Decoded, keys: Keys) -> bool:
    """Whether ``decoded`` carries the signature of ``name`` with the key in force for it now."""
    if agent.public_key is not None:
        return ed25519_valid(decoded.signed_bytes, decoded.sig, agent.public_key)
    key, fingerprint = keys.hmac_key(name, agent.key_generation)
    return fingerprint == agent.key_fingerprint and hmac_valid(decoded.signed_bytes, decoded.sig, key)


def _gate(state: State, p: Proposal) -> Rejected | None:
    """The checks every kind passes after authentication and the nonce."""
    agent = state.agents[p.agent]
    if isinstance(p.body, Genesis):
        return Rejected("UNAUTHORIZED", "the ledger already has its genesis entry", "body.kind")
    if agent.suspended:
        return Rejected("SUSPENDED", f"agent {p.agent!r} is suspended", "agent")
    expiry = _expiry_problem(state, p)
    if expiry is not None:
        return expiry
    kind = p.body.kind
    if kind not in ROLE_KINDS[agent.role]:
        return Rejected("UNAUTHORIZED", f"{kind} is not for the {agent.role} role of {p.agent!r}", "body.kind")
    if kind in TRADE_KINDS and state.breaker_open:
        return Rejected("CIRCUIT_OPEN", f"circuit breaker open: {state.breaker_reason}", None)
    return _rate_problem(state, p.agent) if kind in TRADE_KINDS else None


def _rate_problem(state: State, agent: str) -> Rejected | None:
    limit, grid_limit = state.policy["proposals_per_tick_max"], state.policy["proposals_per_tick_grid_max"]
    if state.tick_counts.get(agent, 0) >= limit:
        return Rejected("RATE_LIMITED", f"{limit} proposals per tick already accepted for {agent!r}")
    if state.tick_count_total >= grid_limit:
        return Rejected("RATE_LIMITED", f"{grid_limit} proposals per tick already accepted on the grid")
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
        nonce=p.nonce,
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
    if signer is None or signer.role != "operator" or signer.public_key is None:
        return Rejected("UNAUTHORIZED", "genesis must be signed by an operator it registers", "agent")
    if signer.public_key not in keys.founders:
        return Rejected("UNAUTHORIZED", f"{p.agent!r} signs with a key the validator does not trust to found", "agent")
    if not ed25519_valid(decoded.signed_bytes, decoded.sig, signer.public_key):
        return Rejected("BAD_SIGNATURE", f"signature does not verify for agent {p.agent!r}", "sig")
    problem = _registry_problem(body, keys)
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
    over = crossing(State(), postings)
    if over is not None:
        return Rejected("LIMIT_EXCEEDED", f"opening balances put {over[1]} of {over[0]} at {over[2]}", "body.balances")
    return _accept(State(), p, postings, effects)


def _registry_problem(body: Genesis, keys: Keys) -> Rejected | None:
    for i, participant in enumerate(body.participants):
        problem = _key_problem(participant, keys, f"body.participants.{i}")
        if problem is not None:
            return problem
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


def _key_problem(new: Participant, keys: Keys, field: str) -> Rejected | None:
    """A participant or the meter is registered with the fingerprint of its first HMAC key (so the
    validator can verify it), an operator with a public key; never both."""
    if new.role in HMAC_ROLES:
        if new.public_key is not None or new.key_fingerprint is None:
            return Rejected(
                "MALFORMED", f"a {new.role} is registered with a key_fingerprint only", f"{field}.key_fingerprint"
            )
        if new.key_fingerprint != keys.hmac_key(new.agent, 0)[1]:
            return Rejected("UNKNOWN_KEY", f"not the validator's key of {new.agent!r}", f"{field}.key_fingerprint")
    elif new.key_fingerprint is not None or new.public_key is None:
        return Rejected("MALFORMED", "an operator is registered with a public_key only", f"{field}.public_key")
    return None


# --- trades --------------------------------------------------------------------------------------


def _owned_account(state: State, agent: str, account: str, field: str) -> Rejected | None:
    owner = state.account_owner.get(account)
    if owner is None:
        return Rejected("UNKNOWN_ACCOUNT", f"account {account!r} does not exist", field)
    if owner != agent:
        return Rejected("NOT_OWNER", f"account {account!r} belongs to {owner!r}, not {agent!r}", field)
    return None


def _cap_problem(state: State, resource: str, quantity: int, price: int = 0) -> Rejected | None:
    """The per-trade caps in force now: on the quantity, and (the credits cap) on the price paid."""
    cap = state.policy[f"trade_quantity_max_{resource}"]
    if quantity > cap:
        return Rejected("POLICY_CAP", f"quantity {quantity} above the {resource} cap {cap}", "body.quantity")
    credits_cap = state.policy["trade_quantity_max_credits"]
    if price > credits_cap:
        return Rejected("POLICY_CAP", f"price {price} above the credits cap {credits_cap}", "body.price")
    return None


def _bound_problem(over: tuple[str, str, int] | None) -> Rejected | None:
    if over is not None:
        return Rejected("LIMIT_EXCEEDED", f"{over[0]} would hold {over[2]} {over[1]}, beyond the balance bound", None)
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
    postings += _carbon_tax_postings(state, p.agent, body.from_account, body.resource, body.quantity)
    problem = _postings_problem(state, postings)
    if problem is not None:
        return problem
    return _accept(state, p, postings, [])


def _postings_problem(state: State, postings: Postings) -> Rejected | None:
    """After every leg (taxes included): no participant overdrawn, no balance past the bound."""
    after = balances_after(state, postings)  # once for both checks: this runs for every trade
    short = negative(state, after)
    if short is not None:
        return Rejected("INSUFFICIENT_BALANCE", f"{short[0]} would hold {short[2]} {short[1]}", "body")
    return _bound_problem(beyond_bound(after))


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
        or _cap_problem(state, body.resource, body.quantity, body.price)
        or _ceiling_problem(state, body.resource, body.quantity, body.price)
        or _funds_problem(state, body.account, body.resource, body.quantity, "seller")
        or _addressee_problem(state, p.agent, body.to_agent)
    )
    if problem is not None:
        return problem
    addressed = {"to_agent": body.to_agent} if body.to_agent is not None else {}
    effect = {
        **addressed,
        "t": "offer_open",
        "offer_id": offer_id(p.agent, p.id),
        "seller": p.agent,
        "account": body.account,
        "resource": body.resource,
        "quantity": body.quantity,
        "price": body.price,
        "open_until_tick": body.open_until_tick,
    }
    return _accept(state, p, [], [effect])


def _addressee_problem(state: State, seller: str, to_agent: str | None) -> Rejected | None:
    if to_agent is None:
        return None
    addressee = state.agents.get(to_agent)
    if addressee is None or addressee.role != "participant":
        return Rejected("UNKNOWN_AGENT", f"{to_agent!r} is not a registered participant", "body.to_agent")
    if to_agent == seller:
        return Rejected("SELF_TRADE", "an offer addressed to its own seller", "body.to_agent")
    return None


def offer_id(seller: str, proposal_id: str) -> str:
    """An offer's name: its seller's and the offer proposal's own id, so no agent can take another's."""
    return f"{seller}/{proposal_id}"


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
    if offer_id(p.agent, p.id) in state.offers:
        return Rejected("DUPLICATE_OFFER", f"{p.agent!r} already has an open offer {p.id!r}", "id")
    own = state.offers_by_seller.get(p.agent, 0)
    if own >= OPEN_OFFERS_PER_AGENT_MAX or len(state.offers) >= OPEN_OFFERS_COUNT_MAX:
        return Rejected("LIMIT_EXCEEDED", f"too many open offers ({own} own, {len(state.offers)} total)", None)
    return None


def _decide_accept(state: State, p: Proposal) -> Decision:
    """Take an offer whole at its current terms. An offer to anyone: any other agent, as the buyer. A
    negotiation: whichever of its two parties has the turn; the seller accepts the buyer's counter."""
    body = p.body
    assert isinstance(body, Accept)
    offer = _open_offer(state, body.offer_id)
    if isinstance(offer, Rejected):
        return offer
    problem = _owned_account(state, p.agent, body.account, "body.account") or _turn_problem(offer, p.agent)
    if problem is not None:
        return problem
    by_seller = offer.seller == p.agent
    if by_seller and (offer.to_agent is None or body.account != offer.account):
        return Rejected("SELF_TRADE", "cannot accept one's own offer", "body.offer_id")
    buyer_account = offer.buyer_account if by_seller else body.account
    assert buyer_account is not None, "a seller has the turn only after the buyer countered with its account"
    problem = (
        # The policy may have tightened since the offer was posted: its caps hold at the trade.
        _cap_problem(state, offer.resource, offer.quantity, offer.price)
        or _ceiling_problem(state, offer.resource, offer.quantity, offer.price)
        or _funds_problem(state, buyer_account, "credits", offer.price, "buyer")
        or _funds_problem(state, offer.account, offer.resource, offer.quantity, "seller")
    )
    if problem is not None:
        return problem
    postings: Postings = [
        (offer.account, offer.resource, -offer.quantity),
        (buyer_account, offer.resource, offer.quantity),
        (buyer_account, "credits", -offer.price),
        (offer.account, "credits", offer.price),
    ]
    postings += _carbon_tax_postings(state, offer.seller, offer.account, offer.resource, offer.quantity)
    problem = _postings_problem(state, postings)
    if problem is not None:
        return problem
    return _accept(state, p, postings, [{"t": "offer_close", "offer_id": offer.offer_id, "why": "accepted"}])


def _open_offer(state: State, offer_id: str) -> OpenOffer | Rejected:
    """The offer ``offer_id`` names, if it is still open."""
    offer = state.offers.get(offer_id)
    if offer is None or offer.open_until_tick < state.tick:
        return Rejected("OFFER_NOT_OPEN", f"offer {offer_id!r} is not open", "body.offer_id")
    return offer


def _turn_problem(offer: OpenOffer, agent: str) -> Rejected | None:
    """In a negotiation only its two parties move, each on its turn."""
    if offer.to_agent is None:
        return None
    if agent not in (offer.seller, offer.to_agent):
        return Rejected(
            "NOT_ADDRESSED", f"offer {offer.offer_id!r} is addressed to {offer.to_agent!r}", "body.offer_id"
        )
    if agent != offer.turn:
        return Rejected("NOT_ADDRESSED", f"it is {offer.turn!r}'s turn in {offer.offer_id!r}", "body.offer_id")
    return None


def _decide_counter(state: State, p: Proposal) -> Decision:
    """New terms for a negotiation, on one's turn; the other party moves next (alternating offers)."""
    body = p.body
    assert isinstance(body, Counter)
    offer = _open_offer(state, body.offer_id)
    if isinstance(offer, Rejected):
        return offer
    if offer.to_agent is None:
        return Rejected("NOT_ADDRESSED", f"offer {offer.offer_id!r} is to anyone: accept it or not", "body.offer_id")
    by_seller = offer.seller == p.agent
    problem = (
        _turn_problem(offer, p.agent)
        or _owned_account(state, p.agent, body.account, "body.account")
        or (
            Rejected("NOT_OWNER", f"the seller counters from its offer's account {offer.account!r}", "body.account")
            if by_seller and body.account != offer.account
            else None
        )
        or (
            Rejected("LIMIT_EXCEEDED", f"{NEGOTIATION_ROUNDS_MAX} counters already", "body.offer_id")
            if offer.rounds >= NEGOTIATION_ROUNDS_MAX
            else None
        )
        or _cap_problem(state, offer.resource, body.quantity, body.price)
        or _ceiling_problem(state, offer.resource, body.quantity, body.price)
    )
    if problem is not None:
        return problem
    effect = {
        "t": "offer_counter",
        "offer_id": offer.offer_id,
        "quantity": body.quantity,
        "price": body.price,
        "turn": offer.to_agent if by_seller else offer.seller,
        "buyer_account": offer.buyer_account if by_seller else body.account,
        "rounds": offer.rounds + 1,
    }
    return _accept(state, p, [], [effect])


def _decide_reject(state: State, p: Proposal) -> Decision:
    """Either party ends a negotiation, whoever's turn it is."""
    body = p.body
    assert isinstance(body, Reject)
    offer = _open_offer(state, body.offer_id)
    if isinstance(offer, Rejected):
        return offer
    if offer.to_agent is None or p.agent not in (offer.seller, offer.to_agent):
        return Rejected("NOT_ADDRESSED", f"{p.agent!r} is not a party to {offer.offer_id!r}", "body.offer_id")
    return _accept(state, p, [], [{"t": "offer_close", "offer_id": offer.offer_id, "why": "rejected"}])


def _decide_order(state: State, p: Proposal) -> Decision:
    """A bid or an ask: escrow, fills against the book, the remainder resting (``law.book``)."""
    body = p.body
    assert isinstance(body, Bid | Ask)
    value = book.ceil_div(body.quantity * body.price, PRICE_QUOTE_UNITS)
    escrowed, amount = book.reservation(body.kind, body.resource, body.quantity, body.price)
    problem = (
        _owned_account(state, p.agent, body.account, "body.account")
        or _order_shape_problem(state, p, body)
        or _cap_problem(state, body.resource, body.quantity, value)
        or _limit_ceiling_problem(state, body.resource, body.price)
        or _funds_problem(state, body.account, escrowed, amount, "buyer" if body.kind == "bid" else "seller")
    )
    if problem is not None:
        return problem
    incoming = Order(
        order_id=offer_id(p.agent, p.id),
        agent=p.agent,
        account=body.account,
        side=body.kind,
        resource=body.resource,
        quantity=body.quantity,
        price=body.price,
        open_until_tick=body.open_until_tick,
        arrival=state.seq_next,
        reserved=amount,
    )
    own = book.self_crossing(state, incoming)
    if own is not None:
        return Rejected("SELF_TRADE", f"crosses {p.agent!r}'s own resting order {own.order_id!r}", "body.price")
    continuous = state.policy["market_mechanism"] == MARKET_CONTINUOUS
    placed = book.place(state, incoming, price_ceiling(state, body.resource), continuous)
    problem = _postings_problem(state, placed.postings)
    if problem is not None:
        return problem
    return _accept(state, p, placed.postings, placed.effects)


def _order_shape_problem(state: State, p: Proposal, body: Bid | Ask) -> Rejected | None:
    if body.resource == "credits":
        return Rejected("MALFORMED", "credits are the price, not a tradable good", "body.resource")
    if body.open_until_tick < state.tick:
        return Rejected(
            "EXPIRED", f"order closes at {body.open_until_tick}, before tick {state.tick}", "body.open_until_tick"
        )
    if body.open_until_tick > state.tick + OFFER_OPEN_TICKS_MAX:
        return Rejected("LIMIT_EXCEEDED", f"orders rest at most {OFFER_OPEN_TICKS_MAX} ticks", "body.open_until_tick")
    order_id = offer_id(p.agent, p.id)
    if order_id in state.orders or order_id in state.offers:
        return Rejected("DUPLICATE_OFFER", f"{p.agent!r} already has an open order or offer {p.id!r}", "id")
    own = state.orders_by_agent.get(p.agent, 0)
    if own >= book.ORDERS_PER_AGENT_MAX or len(state.orders) >= book.ORDERS_COUNT_MAX:
        return Rejected("LIMIT_EXCEEDED", f"too many resting orders ({own} own, {len(state.orders)} total)", None)
    return None


def _limit_ceiling_problem(state: State, resource: str, price: int) -> Rejected | None:
    """An order's limit (already per 1,000 units) above the ceiling could trade above it."""
    ceiling = price_ceiling(state, resource)
    if ceiling and price > ceiling:
        return Rejected(
            "PRICE_CEILING", f"{price} millicredits per 1000 {resource} above the ceiling {ceiling}", "body.price"
        )
    return None


def _carbon_tax_postings(state: State, emitter: str, account: str, resource: str, quantity: int) -> Postings:
    """The carbon tax (``law.book.carbon_tax``) on what an emitter sells or sends, paid from ``account``
    to the treasury."""
    tax = book.carbon_tax(state, emitter, resource, quantity)
    return [(account, "credits", -tax), (SYSTEM_TREASURY, "credits", tax)] if tax else []


def _decide_cancel(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, Cancel)
    order = state.orders.get(body.offer_id)
    if order is not None:
        if order.agent != p.agent:
            return Rejected("NOT_OWNER", f"order {body.offer_id!r} belongs to {order.agent!r}", "body.offer_id")
        released = book.release([order], "cancelled")
        return _accept(state, p, released.postings, released.effects)
    offer = _open_offer(state, body.offer_id)
    if isinstance(offer, Rejected):
        return offer
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
    # The tick's call auction clears as the clock passes it; then orders past their last tick close,
    # their escrow coming back in this entry.
    cleared = _clearing(state) if p.tick > state.tick else book.Outcome()
    after = _after_clearing(state, cleared)
    expired = book.release([o for o in after.orders.values() if o.open_until_tick < p.tick], "expired")
    postings += cleared.postings + expired.postings
    effects: list[dict[str, Any]] = cleared.effects + expired.effects
    if p.tick > state.tick:
        effects.append({"t": "tick", "tick": p.tick})
    effects.append({"t": "shortfall", "units": [[a, r, u] for (a, r), u in sorted(shortfall.items())]})
    effects.append({"t": "telemetry", "values": telemetry.as_dict()})
    trip = _auto_trip(state, p.tick, telemetry)
    if trip is not None:
        closing = book.release([o for o in after.orders.values() if o.open_until_tick >= p.tick], "breaker")
        postings += closing.postings
        effects += [*closing.effects, trip]
    return _accept(state, p, postings, effects)


def _clearing(state: State) -> book.Outcome:
    """Uniform-price clearing of every resource's book, when that mechanism is in force."""
    out = book.Outcome()
    if state.policy["market_mechanism"] == MARKET_CONTINUOUS:
        return out
    for resource in sorted({o.resource for o in state.orders.values()}):
        cleared = book.clear(state, resource, price_ceiling(state, resource))
        out.postings += cleared.postings
        out.effects += cleared.effects
    return out


def _after_clearing(state: State, cleared: book.Outcome) -> State:
    """The book as the clearing leaves it (the state itself is not changed: ``decide`` never mutates)."""
    if not cleared.effects:
        return state
    after = State(orders=dict(state.orders), orders_by_agent=dict(state.orders_by_agent))
    for effect in cleared.effects:
        _ORDER_EFFECTS[effect["t"]](after, effect)
    return after


def _meter_postings(state: State, body: Meter) -> tuple[Postings, dict[tuple[str, str], int], int]:
    """Production first, then consumption served from what the account then holds; the rest is unmet.

    Bounds (``law.bounds``): production an account or system:production has no room for is
    curtailed (not booked); consumption system:consumption has no room for counts as unmet.
    """
    held: dict[tuple[str, str], int] = {}
    system: dict[tuple[str, str], int] = {}
    postings: Postings = []
    shortfall: dict[tuple[str, str], int] = {}
    energy_demand = 0
    for r in body.readings:
        key = (r.account, r.resource)
        balance = held.get(key, state.balance(r.account, r.resource))
        source = system.get((SYSTEM_PRODUCTION, r.resource), state.balance(SYSTEM_PRODUCTION, r.resource))
        produced = min(r.produced, room_up(balance), room_down(source))
        sink = system.get((SYSTEM_CONSUMPTION, r.resource), state.balance(SYSTEM_CONSUMPTION, r.resource))
        served = min(balance + produced, r.consumed, room_up(sink))
        held[key] = balance + produced - served
        system[(SYSTEM_PRODUCTION, r.resource)] = source - produced
        system[(SYSTEM_CONSUMPTION, r.resource)] = sink + served
        if produced:
            postings += [(SYSTEM_PRODUCTION, r.resource, -produced), (r.account, r.resource, produced)]
        if served:
            postings += [(r.account, r.resource, -served), (SYSTEM_CONSUMPTION, r.resource, served)]
        if r.consumed > served:
            shortfall[key] = shortfall.get(key, 0) + r.consumed - served
        if r.resource == "energy":
            energy_demand += r.consumed
    return postings, shortfall, energy_demand


def _interest_postings(state: State, new_tick: int, pending: Postings) -> Postings:
    """Interest on positive credit balances when ``new_tick`` enters a new interest period (floor),
    each payment capped so neither the payee nor system:treasury crosses the balance bound."""
    period, bps = state.policy["interest_period_ticks"], state.policy["interest_bps"]
    if not period or not bps or new_tick // period == state.tick // period:
        return []
    delta: dict[str, int] = {}
    for account, resource, amount in pending:
        if resource == "credits":
            delta[account] = delta.get(account, 0) + amount
    treasury = state.balance(SYSTEM_TREASURY, "credits") + delta.get(SYSTEM_TREASURY, 0)
    postings: Postings = []
    for account in sorted(state.account_owner):
        balance = state.balance(account, "credits") + delta.get(account, 0)
        interest = min(balance * bps // BPS_DENOMINATOR, room_up(balance), room_down(treasury))
        if interest > 0:
            treasury -= interest
            postings += [(SYSTEM_TREASURY, "credits", -interest), (account, "credits", interest)]
    return postings


def _telemetry_after(state: State, postings: Postings, shortfall: dict[tuple[str, str], int], demand: int) -> Telemetry:
    # Energy resting asks hold in escrow is still the participants' (theirs or a buyer's): it counts.
    held = state.account_owner.keys() | {SYSTEM_ESCROW}
    reserve = sum(v for (a, r), v in state.balances.items() if r == "energy" and a in held)
    reserve += sum(amount for a, r, amount in postings if r == "energy" and a in held)
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
        # Capped at RESERVE_PERMILLE_HEALTHY (also the value with no demand): every threshold is below it,
        # and the figure stays a bounded integer for the JSON it is written to.
        reserve_permille=min(reserve * PERMILLE_DENOMINATOR // demand, RESERVE_PERMILLE_HEALTHY)
        if demand
        else RESERVE_PERMILLE_HEALTHY,
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
    expected = body.expected_policy_version
    if expected is not None and expected != state.policy_version:
        return Rejected(
            "STALE_COMMAND",
            f"signed against policy version {expected}; version {state.policy_version} is in force",
            "body.expected_policy_version",
        )
    bad = invalid_param(body.params)
    if bad is not None:
        return Rejected("BAD_POLICY", bad[1], f"body.params.{bad[0]}")
    # A change of market mechanism closes the book: no order trades under rules it was not placed under.
    mechanism = state.policy_pins.get("market_mechanism", body.params.get("market_mechanism"))
    mechanism = state.policy["market_mechanism"] if mechanism is None else mechanism
    closing = book.release(state.orders.values() if mechanism != state.policy["market_mechanism"] else (), "policy")
    policy = {"t": "policy", "params": dict(sorted(body.params.items())), "reason": body.reason}
    return _accept(state, p, closing.postings, [*closing.effects, policy])


def _decide_breaker(state: State, p: Proposal) -> Decision:
    """A human trips or resumes the breaker; the telemetry at that moment travels with the entry."""
    body = p.body
    assert isinstance(body, BreakerTrip | BreakerResume)
    opening = isinstance(body, BreakerTrip)
    if state.breaker_open == opening:
        return Rejected("BREAKER_STATE", f"the breaker is already {'open' if opening else 'closed'}", "body.kind")
    if isinstance(body, BreakerResume) and body.trip_seq != state.breaker_trip_seq:
        return Rejected(
            "STALE_COMMAND",
            f"resumes the trip at seq {body.trip_seq}; the open trip is seq {state.breaker_trip_seq}",
            "body.trip_seq",
        )
    effect = {
        "t": "breaker",
        "open": opening,
        "reason": body.reason,
        "by": p.agent,
        "telemetry": state.telemetry.as_dict(),
    }
    # A trip halts trading: resting orders close and their escrow comes back, so nothing stays promised.
    closing = book.release(state.orders.values() if opening else (), "breaker")
    return _accept(state, p, closing.postings, [*closing.effects, effect])


def _decide_participant_add(state: State, p: Proposal, keys: Keys) -> Decision:
    body = p.body
    assert isinstance(body, ParticipantAdd)
    new = body.participant
    key_problem = _key_problem(new, keys, "body.participant")
    if key_problem is not None:
        return key_problem
    if new.agent in state.agents:
        return Rejected("MALFORMED", f"agent {new.agent!r} already registered", "body.participant.agent")
    taken = next((a for a in new.accounts if a in state.account_owner or a.startswith("system:")), None)
    if taken is not None:
        return Rejected("MALFORMED", f"account {taken!r} is taken", "body.participant.accounts")
    return _accept(state, p, [], [{"t": "register", "participant": new.model_dump()}])


def _decide_participant_rekey(state: State, p: Proposal, keys: Keys) -> Decision:
    """From the next entry on, ``agent`` signs with its next key; every earlier entry still verifies
    with the key in force at its seq, because the fold applies rekeys in order."""
    body = p.body
    assert isinstance(body, ParticipantRekey)
    target = state.agents.get(body.agent)
    if target is None:
        return Rejected("UNKNOWN_AGENT", f"agent {body.agent!r} is not registered", "body.agent")
    if target.role == "operator":
        if body.public_key is None or body.key_fingerprint is not None:
            return Rejected("MALFORMED", "an operator is rekeyed to a public_key only", "body.public_key")
        if body.public_key == target.public_key:
            return Rejected("MALFORMED", "the public key is already in force", "body.public_key")
        effect: dict[str, Any] = {"t": "rekey", "agent": body.agent, "public_key": body.public_key}
    else:
        generation = target.key_generation + 1
        if body.key_fingerprint is None or body.public_key is not None:
            return Rejected(
                "MALFORMED", f"a {target.role} is rekeyed to a key_fingerprint only", "body.key_fingerprint"
            )
        if body.key_fingerprint != keys.hmac_key(body.agent, generation)[1]:
            return Rejected(
                "UNKNOWN_KEY",
                f"not the validator's key generation {generation} of {body.agent!r}",
                "body.key_fingerprint",
            )
        effect = {"t": "rekey", "agent": body.agent, "key_fingerprint": body.key_fingerprint, "generation": generation}
    return _accept(state, p, [], [{**effect, "reason": body.reason}])


def _decide_participant_suspend(state: State, p: Proposal) -> Decision:
    body = p.body
    assert isinstance(body, ParticipantSuspend)
    target = state.agents.get(body.agent)
    if target is None:
        return Rejected("UNKNOWN_AGENT", f"agent {body.agent!r} is not registered", "body.agent")
    if target.role == "operator":
        return Rejected("UNAUTHORIZED", "operators cannot be suspended by command", "body.agent")
    closing = book.release([o for o in state.orders.values() if o.agent == body.agent], "suspended")
    suspend = {"t": "suspend", "agent": body.agent, "reason": body.reason}
    return _accept(state, p, closing.postings, [*closing.effects, suspend])


_RULES: dict[str, Callable[[State, Proposal], Decision]] = {
    "transfer": _decide_transfer,
    "offer": _decide_offer,
    "accept": _decide_accept,
    "counter": _decide_counter,
    "reject": _decide_reject,
    "bid": _decide_order,
    "ask": _decide_order,
    "cancel": _decide_cancel,
    "meter": _decide_meter,
    "policy_set": _decide_policy_set,
    "breaker_trip": _decide_breaker,
    "breaker_resume": _decide_breaker,
    "participant_suspend": _decide_participant_suspend,
}
# The registry's rules also ask the validator's keys: a registered key must be one it can verify.
_KEYED_RULES: dict[str, Callable[[State, Proposal, Keys], Decision]] = {
    "participant_add": _decide_participant_add,
    "participant_rekey": _decide_participant_rekey,
}


def _rule(state: State, p: Proposal, keys: Keys) -> Decision:
    kind = p.body.kind
    keyed = _KEYED_RULES.get(kind)
    return keyed(state, p, keys) if keyed is not None else _RULES[kind](state, p)
