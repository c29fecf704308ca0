"""The order book: a continuous double auction with price-time priority, partial fills and escrow.

Pure, like the rest of the law: the same state and order give the same fills, in the same order.

- **Escrow.** An order first moves what it could have to deliver into ``system:escrow``: a bid the
  most it can pay, ``ceil(quantity x price / 1000)`` credits; an ask its resource. A fill pays out of
  escrow, so it can never fail for lack of funds and nothing is promised twice. What a closed order
  still holds goes back to its account in the same entry (``order_close`` with ``released``), whether
  it closed filled, cancelled, expired, suspended or by the breaker.
- **Continuous matching** (policy ``market_mechanism`` 0). An incoming order fills against resting
  orders of the other side that cross its limit, best price first, then the earliest (``arrival``: the
  seq of the entry that placed it), at the resting order's price, in as many partial fills as it takes
  (at most ``FILLS_PER_ORDER_MAX``). The rest rests until ``open_until_tick``; past that fill limit it
  is released instead. Never at a price above the ceiling in force now.
- **Uniform-price clearing** (``market_mechanism`` 1, pay-as-clear). Orders only rest while the tick
  runs; the meter entry that ends it clears each resource: bids by price descending, asks ascending,
  each side's ties by arrival, matched pairwise while the bid is at or above the ask; every fill of the
  resource trades at one price, the limit of the last (marginal) ask matched, which is within every
  matched order's limit; the marginal quantity goes by time priority.
- **No self-trade.** An order that would cross a resting order of the same agent (whichever of its
  accounts) is refused, so an agent can neither fill against itself nor paint the tape.
- **Rounding.** A fill's payment is the step in ``ceil(bid's value filled / 1000)``, the value being
  the sum of quantity x price over the bid's fills: over a whole bid the buyer pays the exact value
  rounded up by less than one millicredit, never more than it reserved, and each payment is a transfer,
  so no credit is created or lost.
- **Carbon tax.** An emitter's energy fill pays the tax in force at the fill (rounded up, as for every
  trade) out of its proceeds, never more than them: the fill cannot fail for lack of credits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from law.policy import PRICE_QUOTE_UNITS
from law.state import SYSTEM_ESCROW, SYSTEM_TREASURY, Order, State

FILLS_PER_ORDER_MAX = 64  # a limit on one entry's size: an order sweeps at most this many resting ones
CLEARING_FILLS_MAX = 512  # per resource and tick; what crosses beyond it clears at the next tick
ORDERS_PER_AGENT_MAX = 16
ORDERS_COUNT_MAX = 10_000

Posting = tuple[str, str, int]


@dataclass
class Outcome:
    """What an order, or a release of orders, books: postings and effects for one ledger entry."""

    postings: list[Posting] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def reservation(side: str, resource: str, quantity: int, price: int) -> tuple[str, int]:
    """What an order puts in escrow: (resource, amount)."""
    if side == "bid":
        return "credits", ceil_div(quantity * price, PRICE_QUOTE_UNITS)
    return resource, quantity


def payment(value_before: int, quantity: int, price: int) -> int:
    """What a bid pays for a fill of ``quantity`` at ``price``, after fills worth ``value_before``."""
    value_after = value_before + quantity * price
    return ceil_div(value_after, PRICE_QUOTE_UNITS) - ceil_div(value_before, PRICE_QUOTE_UNITS)


def carbon_tax(state: State, seller: str, resource: str, quantity: int) -> int:
    """Millicredits of carbon tax on ``quantity`` Wh an emitter sells or sends, rounded up (ceiling), so
    no split into small trades pays less than the whole."""
    if resource != "energy" or not state.agents[seller].emits_carbon:
        return 0
    return ceil_div(quantity * state.policy["carbon_tax_per_kwh"], PRICE_QUOTE_UNITS)


def self_crossing(state: State, order: Order) -> Order | None:
    """A resting order of the same agent that ``order`` would cross."""
    return next(iter(_crossing(state, order, 0, order.agent)), None)


def place(state: State, order: Order, ceiling: int, continuous: bool) -> Outcome:
    """Reserve ``order``'s escrow, fill it against the book (``continuous``), and rest (or release) the
    remainder; with uniform-price clearing it only rests, for the tick's clearing.

    ``order`` is the incoming order whole (``quantity`` its full size, ``reserved`` and ``value_filled``
    unused); ``ceiling`` the price ceiling of its resource now (0: none).
    """
    resource, reserved = reservation(order.side, order.resource, order.quantity, order.price)
    out = Outcome([(order.account, resource, -reserved), (SYSTEM_ESCROW, resource, reserved)])
    makers = _crossing(state, order, ceiling) if continuous else []
    left, value, spent = order.quantity, 0, 0
    for maker in makers[:FILLS_PER_ORDER_MAX]:
        quantity = min(left, maker.quantity)
        pay = payment(value if order.side == "bid" else maker.value_filled, quantity, maker.price)
        _fill(state, out, order, maker, quantity, pay)
        left -= quantity
        spent += pay if order.side == "bid" else quantity
        value += quantity * maker.price if order.side == "bid" else 0
        if left == 0:
            break
    swept = len(makers) > FILLS_PER_ORDER_MAX and left > 0
    if left and not swept:
        resting = dataclasses.replace(order, quantity=left, reserved=reserved - spent, value_filled=value)
        out.effects.append({"t": "order_open", **{f.name: getattr(resting, f.name) for f in dataclasses.fields(Order)}})
    else:
        out.postings += _release(order, resource, reserved - spent)
    return out


def _crossing(state: State, order: Order, ceiling: int, agent: str | None = None) -> list[Order]:
    """The resting orders (of ``agent`` only, if given) ``order`` may fill against, in the order it
    fills them."""
    other = "ask" if order.side == "bid" else "bid"
    found = [
        m
        for m in state.orders.values()
        if m.side == other
        and m.resource == order.resource
        and (agent is None or m.agent == agent)
        and (m.price <= order.price if order.side == "bid" else m.price >= order.price)
        and (not ceiling or m.price <= ceiling)
    ]
    if order.side == "bid":
        found.sort(key=lambda m: (m.price, m.arrival))
    else:
        found.sort(key=lambda m: (-m.price, m.arrival))
    return found


def _fill(
    state: State, out: Outcome, taker: Order, maker: Order, quantity: int, pay: int, price: int | None = None
) -> None:
    """One fill at ``price`` (default: the maker's); the maker closes if it is filled whole."""
    buyer, seller = (taker, maker) if taker.side == "bid" else (maker, taker)
    resource = taker.resource
    out.postings += [
        (SYSTEM_ESCROW, resource, -quantity),
        (buyer.account, resource, quantity),
        (SYSTEM_ESCROW, "credits", -pay),
        (seller.account, "credits", pay),
    ]
    tax = min(carbon_tax(state, seller.agent, resource, quantity), pay)
    if tax:
        out.postings += [(seller.account, "credits", -tax), (SYSTEM_TREASURY, "credits", tax)]
    sides = {"maker": maker.order_id, "taker": taker.order_id}
    terms = {"resource": resource, "quantity": quantity, "price": maker.price if price is None else price}
    out.effects.append({"t": "fill", **sides, **terms, "payment": pay, "tax": tax})
    if quantity == maker.quantity:
        _close_filled(out, maker, quantity, pay)


def _close_filled(out: Outcome, order: Order, quantity: int, pay: int) -> None:
    """``order`` (resting, before its last fill of ``quantity`` for ``pay``) is filled: close it."""
    released = order.reserved - pay if order.side == "bid" else order.reserved - quantity
    out.postings += _release(order, "credits" if order.side == "bid" else order.resource, released)
    out.effects.append({"t": "order_close", "order_id": order.order_id, "why": "filled", "released": released})


def _release(order: Order, resource: str, amount: int) -> list[Posting]:
    assert amount >= 0, f"order {order.order_id} would release {amount}"
    return [(SYSTEM_ESCROW, resource, -amount), (order.account, resource, amount)] if amount else []


def release(orders: Iterable[Order], why: str) -> Outcome:
    """Close resting ``orders`` (oldest first) and give back what each holds in escrow."""
    out = Outcome()
    for order in sorted(orders, key=lambda o: o.arrival):
        resource = "credits" if order.side == "bid" else order.resource
        out.postings += _release(order, resource, order.reserved)
        out.effects.append({"t": "order_close", "order_id": order.order_id, "why": why, "released": order.reserved})
    return out


def clear(state: State, resource: str, ceiling: int) -> Outcome:
    """Uniform-price clearing of ``resource``'s resting orders (the module docstring states the rule)."""
    resting = [o for o in state.orders.values() if o.resource == resource and (not ceiling or o.price <= ceiling)]
    bids = sorted((o for o in resting if o.side == "bid"), key=lambda o: (-o.price, o.arrival))
    asks = sorted((o for o in resting if o.side == "ask"), key=lambda o: (o.price, o.arrival))
    matches = _merit_order(bids, asks)
    out = Outcome()
    if not matches:
        return out
    price = matches[-1][1].price  # the marginal ask's limit: at or below every matched bid
    live = {o.order_id: o for o in (*bids, *asks)}
    for bid, ask, quantity in matches:
        buyer, seller = live[bid.order_id], live[ask.order_id]
        pay = payment(buyer.value_filled, quantity, price)
        _fill(state, out, seller, buyer, quantity, pay, price)  # closes the bid when filled whole
        if quantity == seller.quantity:
            _close_filled(out, seller, quantity, pay)
        live[bid.order_id] = dataclasses.replace(
            buyer, quantity=buyer.quantity - quantity, reserved=buyer.reserved - pay,
            value_filled=buyer.value_filled + quantity * price,
        )  # fmt: skip
        live[ask.order_id] = dataclasses.replace(
            seller, quantity=seller.quantity - quantity, reserved=seller.reserved - quantity
        )
    volume = sum(q for _, _, q in matches)
    out.effects.append({"t": "clearing", "resource": resource, "price": price, "volume": volume})
    return out


def _merit_order(bids: list[Order], asks: list[Order]) -> list[tuple[Order, Order, int]]:
    """Pairs (bid, ask, quantity) matched down the merit order while the bid is at or above the ask."""
    matches: list[tuple[Order, Order, int]] = []
    i = j = 0
    bid_left = bids[0].quantity if bids else 0
    ask_left = asks[0].quantity if asks else 0
    while i < len(bids) and j < len(asks) and bids[i].price >= asks[j].price and len(matches) < CLEARING_FILLS_MAX:
        quantity = min(bid_left, ask_left)
        matches.append((bids[i], asks[j], quantity))
        bid_left, ask_left = bid_left - quantity, ask_left - quantity
        if not bid_left:
            i += 1
            bid_left = bids[i].quantity if i < len(bids) else 0
        if not ask_left:
            j += 1
            ask_left = asks[j].quantity if j < len(asks) else 0
    return matches
