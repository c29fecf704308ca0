"""Negotiation (alternating offers): an offer addressed to one agent, accepted, rejected or countered
in turn by its two parties until a deal, a rejection or the deadline."""

from __future__ import annotations

from typing import Any

from law import Accepted, Rejected
from law.decide import NEGOTIATION_ROUNDS_MAX
from tests.support.world import World, account

SELLER, BUYER, OTHER = "solar", "hospital", "battery"
OFFER_ID = f"{SELLER}/p1"  # p0 is the genesis


def offered(**extra: Any) -> World:
    world = World().start()
    body = {"kind": "offer", "account": account(SELLER), "resource": "energy", "quantity": 1_000, "price": 900}
    decision = world.submit(SELLER, {**body, "open_until_tick": 5, "to_agent": BUYER, **extra})
    assert isinstance(decision, Accepted), decision
    return world


def counter(world: World, agent: str, price: int, quantity: int = 1_000) -> Accepted | Rejected:
    body = {"kind": "counter", "offer_id": OFFER_ID, "account": account(agent), "quantity": quantity, "price": price}
    return world.submit(agent, body)


def accept(world: World, agent: str) -> Accepted | Rejected:
    return world.submit(agent, {"kind": "accept", "offer_id": OFFER_ID, "account": account(agent)})


def reason(decision: Accepted | Rejected) -> str:
    return "ACCEPTED" if isinstance(decision, Accepted) else decision.reason_code


def test_only_the_addressee_may_take_an_addressed_offer() -> None:
    world = offered()
    assert reason(accept(world, OTHER)) == "NOT_ADDRESSED"
    assert reason(counter(world, OTHER, 800)) == "NOT_ADDRESSED"
    assert reason(accept(world, BUYER)) == "ACCEPTED"
    assert world.state.balance(account(BUYER), "energy") == 1_000_000 + 1_000
    assert world.state.balance(account(SELLER), "credits") == 1_000_000 + 900


def test_a_counter_passes_the_turn_and_the_seller_accepts_the_buyers_terms() -> None:
    world = offered()
    assert reason(counter(world, SELLER, 850)) == "NOT_ADDRESSED"  # the addressee moves first
    assert reason(counter(world, BUYER, 700, quantity=600)) == "ACCEPTED"
    offer = world.state.offers[OFFER_ID]
    assert (offer.turn, offer.quantity, offer.price, offer.rounds) == (SELLER, 600, 700, 1)
    assert reason(accept(world, BUYER)) == "NOT_ADDRESSED"  # not its turn any more
    assert reason(accept(world, SELLER)) == "ACCEPTED"  # the seller takes the counter
    assert world.state.balance(account(BUYER), "energy") == 1_000_000 + 600
    assert world.state.balance(account(BUYER), "credits") == 1_000_000 - 700
    assert OFFER_ID not in world.state.offers


def test_counters_alternate_until_the_buyer_accepts_the_sellers_counter() -> None:
    world = offered()
    assert reason(counter(world, BUYER, 700)) == "ACCEPTED"
    assert reason(counter(world, SELLER, 800)) == "ACCEPTED"
    assert world.state.offers[OFFER_ID].turn == BUYER
    assert reason(accept(world, BUYER)) == "ACCEPTED"
    assert world.state.balance(account(SELLER), "credits") == 1_000_000 + 800


def test_either_party_may_end_it_and_a_third_may_not() -> None:
    world = offered()
    reject = {"kind": "reject", "offer_id": OFFER_ID}
    assert reason(world.submit(OTHER, reject)) == "NOT_ADDRESSED"
    decision = world.submit(SELLER, reject)  # not its turn, but a party may always walk away
    assert isinstance(decision, Accepted) and decision.effects[0]["why"] == "rejected"
    assert reason(accept(world, BUYER)) == "OFFER_NOT_OPEN"


def test_a_negotiation_has_a_bounded_number_of_counters() -> None:
    world = offered()
    for round_number in range(NEGOTIATION_ROUNDS_MAX):
        agent = BUYER if round_number % 2 == 0 else SELLER
        assert reason(counter(world, agent, 700 + round_number)) == "ACCEPTED"
    assert reason(counter(world, BUYER, 1)) == "LIMIT_EXCEEDED"


def test_an_offer_to_anyone_cannot_be_countered_and_an_address_must_be_a_participant() -> None:
    world = World().start()
    body = {"kind": "offer", "account": account(SELLER), "resource": "energy", "quantity": 10, "price": 9}
    assert reason(world.submit(SELLER, {**body, "open_until_tick": 5})) == "ACCEPTED"
    assert reason(counter(world, BUYER, 5, quantity=10)) == "NOT_ADDRESSED"
    assert reason(world.submit(SELLER, {**body, "open_until_tick": 5, "to_agent": "meter"})) == "UNKNOWN_AGENT"
    assert reason(world.submit(SELLER, {**body, "open_until_tick": 5, "to_agent": SELLER})) == "SELF_TRADE"


def test_a_counter_is_held_to_the_caps_and_the_buyers_funds_at_the_deal() -> None:
    world = offered()
    assert reason(counter(world, BUYER, 2_000_000)) == "ACCEPTED"  # terms are only words until accepted
    assert reason(accept(world, SELLER)) == "INSUFFICIENT_BALANCE"  # the buyer holds 1,000,000 credits
