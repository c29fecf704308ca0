"""BookStrategy: bids for what it lacks, asks its surplus, reprices what rests unfilled, and the bodies
it makes are orders the law reads (a limit per 1,000 units, escrow it can afford)."""

from __future__ import annotations

from dataclasses import replace

from agents.book_strategy import ORDER_STALE_TICKS, BookStrategy
from agents.heuristic import REFERENCE_PRICE_PER_1000
from agents.intent import to_body
from agents.view import RestingOrder
from tests.unit.agents.test_heuristic import ACCOUNT, view


def test_a_short_agent_bids_for_its_need_at_a_limit_above_the_reference() -> None:
    short = view(tick=10, water=0, consumption={"energy": 1_000, "water": 10_000})
    intent = BookStrategy().choose(short).intent
    assert (intent.action, intent.resource) == ("bid", "water")
    assert intent.quantity == 2 * 10_000  # two ticks of consumption
    assert intent.price is not None and intent.price > REFERENCE_PRICE_PER_1000["water"]
    body = to_body(intent, short)
    assert body is not None and body["kind"] == "bid" and body["account"] == ACCOUNT


def test_a_bid_never_reserves_more_credits_than_the_agent_holds() -> None:
    poor = view(tick=10, water=0, credits=1_000, consumption={"energy": 1_000, "water": 10_000})
    intent = BookStrategy().choose(poor).intent
    assert intent.action == "bid" and intent.quantity is not None and intent.price
    assert -(-intent.quantity * intent.price // 1_000) <= 1_000


def test_a_long_agent_asks_its_whole_surplus_above_the_reserve_on_the_other_tick() -> None:
    long = view(tick=11, energy=100_000, consumption={"energy": 1_000, "water": 0})
    intent = BookStrategy().choose(long).intent
    assert (intent.action, intent.resource, intent.quantity) == ("ask", "energy", 100_000 - 4 * 1_000)
    assert intent.price == REFERENCE_PRICE_PER_1000["energy"]


def test_an_order_resting_unfilled_is_cancelled_and_the_next_one_repriced() -> None:
    strategy = BookStrategy()
    resting = RestingOrder("solar-1/p1", "ask", "energy", 96_000, 150, 20)
    long = view(tick=11, energy=4_000, water=0, consumption={"energy": 1_000, "water": 0}, own_orders=(resting,))
    assert strategy.choose(long).intent.action == "hold"  # first seen: give it time
    stale = replace(long, tick=11 + ORDER_STALE_TICKS)
    cancel = strategy.choose(stale).intent
    assert (cancel.action, cancel.offer_id) == ("cancel", "solar-1/p1")
    refilled = {**stale.balances, "energy": 100_000}
    again = strategy.choose(replace(stale, tick=stale.tick + 3, balances=refilled, own_orders=())).intent
    assert again.action == "ask" and again.price is not None and again.price < 150


def test_it_holds_while_the_breaker_is_open() -> None:
    assert BookStrategy().choose(view(water=0, breaker_open=True)).intent.action == "hold"
