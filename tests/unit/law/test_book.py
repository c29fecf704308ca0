"""The order book (law/book.py): fills by price-time priority, partial fills, escrow, releases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given

from law import Accepted, book
from law.book import payment
from law.ledger import Entry, as_accepted
from law.state import SYSTEM_ESCROW, State
from schemas.types import RESOURCES
from tests.support.world import World, account
from tests.unit.law.test_decide_properties import fast, run, sequences

SELLER, BUYERS = "solar", ("battery", "hospital", "datacentre")


def bid(quantity: int, price: int, until: int = 5, resource: str = "energy") -> dict[str, Any]:
    return {"kind": "bid", "resource": resource, "quantity": quantity, "price": price, "open_until_tick": until}


def ask(quantity: int, price: int, until: int = 5, resource: str = "energy") -> dict[str, Any]:
    return {**bid(quantity, price, until, resource), "kind": "ask"}


def place(world: World, agent: str, order: dict[str, Any]) -> Accepted:
    decision = world.submit(agent, {**order, "account": account(agent)})
    assert isinstance(decision, Accepted), decision
    return decision


def effects(decision: Accepted, kind: str) -> list[dict[str, Any]]:
    return [e for e in decision.effects if e["t"] == kind]


def escrow_matches_the_book(state: State) -> None:
    for resource in RESOURCES:
        held = sum(
            o.reserved
            for o in state.orders.values()
            if (o.side == "bid" and resource == "credits") or (o.side == "ask" and o.resource == resource)
        )
        assert state.balance(SYSTEM_ESCROW, resource) == held, resource


def test_three_buyers_for_one_sellers_energy_fill_in_turn_and_the_last_partly() -> None:
    world = World().start()
    place(world, SELLER, ask(1_000, 500))
    fills = [effects(place(world, b, bid(400, 600)), "fill") for b in BUYERS]
    assert [[(f["quantity"], f["price"], f["payment"]) for f in fs] for fs in fills] == [
        [(400, 500, 200)],
        [(400, 500, 200)],
        [(200, 500, 100)],  # what was left of the ask; the rest of this bid rests
    ]
    last = world.state.orders[f"{BUYERS[2]}/p4"]  # p0 is the genesis, p1 the ask
    # it reserved ceil(400 x 600 / 1000) = 240, paid 100: 140 stay in escrow for the 200 still wanted
    assert (last.quantity, last.reserved) == (200, 140)
    assert world.state.balance(account(SELLER), "credits") == 1_000_000 + 500
    assert world.state.balance(account(SELLER), "energy") == 1_000_000 - 1_000
    for buyer, got in zip(BUYERS, (400, 400, 200), strict=True):
        assert world.state.balance(account(buyer), "energy") == 1_000_000 + got
    escrow_matches_the_book(world.state)


def test_a_bid_sweeps_the_best_price_first_then_the_earliest_at_each_resting_price() -> None:
    world = World().start()
    place(world, "battery", ask(100, 600))  # p1
    place(world, "hospital", ask(100, 500))  # p2
    place(world, "datacentre", ask(100, 500))  # p3: same price, later
    fills = effects(place(world, SELLER, bid(250, 700)), "fill")
    assert [(f["maker"], f["quantity"], f["price"]) for f in fills] == [
        ("hospital/p2", 100, 500),
        ("datacentre/p3", 100, 500),
        ("battery/p1", 50, 600),
    ]
    assert world.state.orders["battery/p1"].quantity == 50
    escrow_matches_the_book(world.state)


def test_orders_that_do_not_cross_rest_and_an_order_crossing_its_own_agent_is_refused() -> None:
    world = World().start()
    place(world, SELLER, ask(100, 500))
    assert not effects(place(world, "battery", bid(100, 499)), "fill")
    own = world.submit(SELLER, {**bid(100, 900), "account": account(SELLER)})
    assert not isinstance(own, Accepted) and own.reason_code == "SELF_TRADE"
    assert len(world.state.orders) == 2
    escrow_matches_the_book(world.state)


def test_cancel_expiry_suspension_and_the_breaker_give_the_escrow_back() -> None:
    world = World().start()
    place(world, "battery", bid(1_000, 700, until=3))  # p1: reserves 700 credits
    place(world, "hospital", ask(500, 900, until=1))  # p2: reserves 500 Wh
    place(world, "datacentre", bid(10, 100, until=9))  # p3
    cancelled = world.submit("battery", {"kind": "cancel", "offer_id": "battery/p1"})
    assert isinstance(cancelled, Accepted)
    assert effects(cancelled, "order_close") == [
        {"t": "order_close", "order_id": "battery/p1", "why": "cancelled", "released": 700}
    ]
    assert world.state.balance(account("battery"), "credits") == 1_000_000
    metered = world.meter(2, [])
    assert isinstance(metered, Accepted)
    assert [e["order_id"] for e in effects(metered, "order_close")] == ["hospital/p2"]  # past its tick 1
    assert world.state.balance(account("hospital"), "energy") == 1_000_000
    tripped = world.submit("operator", {"kind": "breaker_trip", "reason": "drill"})
    assert isinstance(tripped, Accepted) and [e["why"] for e in effects(tripped, "order_close")] == ["breaker"]
    assert world.state.orders == {} and world.state.balance(SYSTEM_ESCROW, "credits") == 0


def test_a_suspended_agents_orders_close_with_it() -> None:
    world = World().start()
    place(world, "battery", ask(100, 500))
    suspended = world.submit("operator", {"kind": "participant_suspend", "agent": "battery", "reason": "audit"})
    assert isinstance(suspended, Accepted)
    assert [e["why"] for e in effects(suspended, "order_close")] == ["suspended"]
    assert world.state.orders == {} and world.state.balance(account("battery"), "energy") == 1_000_000


def test_one_order_sweeps_at_most_the_fill_limit_and_the_rest_is_released_not_rested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 5  # FILLS_PER_ORDER_MAX is 64; the per-agent order limit leaves this world fewer makers
    monkeypatch.setattr(book, "FILLS_PER_ORDER_MAX", limit)
    world = World().start()
    for i in range(limit + 1):
        place(world, BUYERS[i % 3], ask(1, 500, until=50))
    swept = place(world, SELLER, bid(limit + 10, 500))
    assert len(effects(swept, "fill")) == limit
    assert not effects(swept, "order_open") and f"{SELLER}/p{limit + 2}" not in world.state.orders
    assert world.state.balance(account(SELLER), "credits") == 1_000_000 - payment(0, limit, 500)
    escrow_matches_the_book(world.state)


def test_payments_round_the_bids_running_value_up_so_splits_cost_the_same_as_the_whole() -> None:
    whole = payment(0, 3, 1)  # 3 Wh at 1 millicredit per kWh: 0.003 rounds up to 1
    split = payment(0, 1, 1) + payment(1, 1, 1) + payment(2, 1, 1)
    assert whole == split == 1
    assert sum(payment(v * 333, 333, 1_000) for v in range(3)) == 999


def test_an_order_above_the_ceiling_or_beyond_the_funds_is_refused() -> None:
    world = World().start(price_ceiling_energy=800)
    refused = world.submit("battery", {**bid(100, 801), "account": account("battery")})
    assert not isinstance(refused, Accepted) and refused.reason_code == "PRICE_CEILING"
    broke = world.submit("battery", {**ask(2_000_000, 100), "account": account("battery")})
    assert not isinstance(broke, Accepted) and broke.reason_code == "INSUFFICIENT_BALANCE"
    credits = world.submit("battery", {**bid(100, 1, resource="credits"), "account": account("battery")})
    assert not isinstance(credits, Accepted) and credits.reason_code == "MALFORMED"


# --- properties over arbitrary sequences (the generator in test_decide_properties places orders) --


@fast
@given(sequences)
def test_escrow_always_holds_exactly_what_the_resting_orders_reserve(sequence: list) -> None:
    world, _ = run(sequence)
    escrow_matches_the_book(world.state)
    assert all(o.reserved >= 0 and o.quantity > 0 for o in world.state.orders.values())


@fast
@given(sequences)
def test_a_continuous_book_is_never_left_crossed(sequence: list) -> None:
    world, _ = run(sequence)
    if world.state.policy["market_mechanism"] != 0:
        return  # a call auction's book crosses until the tick clears it
    orders = list(world.state.orders.values())
    for b in (o for o in orders if o.side == "bid"):
        for a in (o for o in orders if o.side == "ask" and o.resource == b.resource):
            assert b.price < a.price, (b, a)


@fast
@given(sequences)
def test_fills_are_within_both_limits_in_priority_order_and_sum_to_each_order(sequence: list) -> None:
    world, _ = run(sequence)
    placed: dict[str, dict[str, Any]] = {}  # order id -> its body, as proposed
    filled: dict[str, int] = {}
    for entry in world.entries:
        accepted = as_accepted(entry)
        fills = effects(accepted, "fill")
        if accepted.kind in ("bid", "ask"):
            body = world_body(entry)
            taker = f"{accepted.agent}/{accepted.proposal_id}"
            placed[taker] = body
            keys = []
            for f in fills:
                maker = placed[f["maker"]]
                bid_limit, ask_limit = (body, maker) if body["kind"] == "bid" else (maker, body)
                assert ask_limit["price"] <= f["price"] <= bid_limit["price"]
                assert f["price"] == maker["price"]  # continuous: at the resting order's price
                keys.append(f["price"] if body["kind"] == "bid" else -f["price"])
                filled[f["maker"]] = filled.get(f["maker"], 0) + f["quantity"]
            assert keys == sorted(keys)
            assert sum(f["quantity"] for f in fills) <= body["quantity"]
            filled[taker] = sum(f["quantity"] for f in fills)
        elif fills:  # a meter entry's uniform-price clearing: two resting orders per fill
            assert accepted.kind == "meter"
            prices: dict[str, set[int]] = {}
            for f in fills:
                maker, taker = placed[f["maker"]], placed[f["taker"]]
                bid_body, ask_body = (maker, taker) if maker["kind"] == "bid" else (taker, maker)
                assert ask_body["price"] <= f["price"] <= bid_body["price"]
                prices.setdefault(bid_body["resource"], set()).add(f["price"])
                for order_id in (f["maker"], f["taker"]):
                    filled[order_id] = filled.get(order_id, 0) + f["quantity"]
            assert all(len(p) == 1 for p in prices.values()), prices  # one price per resource
    for order_id, order in world.state.orders.items():
        assert filled.get(order_id, 0) + order.quantity == placed[order_id]["quantity"]


def world_body(entry: Entry) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(entry.proposal_json)["body"]
    return body


def test_uniform_price_clearing_matches_the_supply_and_demand_curves_worked_by_hand() -> None:
    """Bids and asks of one tick, cleared by its meter entry (market_mechanism 1):

    | order             | side | price | quantity | cumulative at 550 |
    |-------------------|------|-------|----------|-------------------|
    | battery/p1        | bid  |   700 |      300 | demand 300        |
    | hospital/p2       | bid  |   600 |      200 | demand 500        |
    | datacentre/p3     | bid  |   400 |      200 | (below 550)       |
    | solar/p4          | ask  |   350 |      250 | supply 250        |
    | datacentre/p5     | ask  |   550 |      200 | supply 450        |

    Supply meets demand at 450 units; any price in [550, 600] clears them and the rule takes the
    marginal ask's 550. battery gets 300, hospital 150 of its 200 (the marginal quantity), datacentre's
    bid at 400 none. Each pays 550 per 1,000: battery 165, hospital ceil(82.5) = 83.
    """
    world = World().start(market_mechanism=1)
    for agent, order in [
        ("battery", bid(300, 700)), ("hospital", bid(200, 600)), ("datacentre", bid(200, 400)),
        (SELLER, ask(250, 350)), ("datacentre", ask(200, 550)),
    ]:  # fmt: skip
        assert not effects(place(world, agent, order), "fill")  # orders only collect during the tick
    cleared = world.meter(1, [])
    assert isinstance(cleared, Accepted)
    assert effects(cleared, "clearing") == [{"t": "clearing", "resource": "energy", "price": 550, "volume": 450}]
    assert [(f["maker"], f["taker"], f["quantity"], f["payment"]) for f in effects(cleared, "fill")] == [
        ("battery/p1", "solar/p4", 250, 138),
        ("battery/p1", "datacentre/p5", 50, 27),
        ("hospital/p2", "datacentre/p5", 150, 83),
    ]
    state = world.state
    assert state.balance(account("battery"), "energy") == 1_000_000 + 300
    assert state.balance(account("battery"), "credits") == 1_000_000 - 165  # its 210 reserved, 45 back
    assert state.balance(account(SELLER), "credits") == 1_000_000 + 138
    assert state.balance(account("datacentre"), "credits") == 1_000_000 + 110 - 80  # 80 still reserved
    assert {i: (o.quantity, o.reserved) for i, o in state.orders.items()} == {
        "hospital/p2": (50, 120 - 83),
        "datacentre/p3": (200, 80),
    }
    escrow_matches_the_book(state)


def test_a_change_of_market_mechanism_closes_the_book() -> None:
    world = World().start()
    place(world, "battery", bid(100, 500))
    changed = world.submit("operator", {"kind": "policy_set", "params": {"market_mechanism": 1}})
    assert isinstance(changed, Accepted) and [e["why"] for e in effects(changed, "order_close")] == ["policy"]
    assert world.state.orders == {} and world.state.balance(SYSTEM_ESCROW, "credits") == 0
