"""A counterfactual's pinned policy (``State.pinned``): what the log sets cannot move a pinned
parameter, so the same proposals are decided under the pinned market mechanism throughout."""

from __future__ import annotations

import pytest

from law import Accepted
from law.policy import MARKET_CONTINUOUS, MARKET_UNIFORM_PRICE
from law.snapshot import to_json
from law.state import State
from tests.support.world import World
from tests.unit.law.test_book import ask, bid, effects, escrow_matches_the_book, place


def pinned_world(mechanism: int, **genesis_policy: int) -> World:
    return World(state=State.pinned({"market_mechanism": mechanism})).start(**genesis_policy)


def test_the_genesis_cannot_set_a_pinned_mechanism() -> None:
    world = pinned_world(MARKET_CONTINUOUS, market_mechanism=MARKET_UNIFORM_PRICE, carbon_tax_per_kwh=20)
    assert world.state.policy["market_mechanism"] == MARKET_CONTINUOUS
    assert world.state.policy["carbon_tax_per_kwh"] == 20  # what is not pinned follows the log
    place(world, "battery", bid(100, 500))
    crossing = place(world, "solar", ask(100, 400))
    assert [f["quantity"] for f in effects(crossing, "fill")] == [100]  # continuous: it fills at once


def test_a_policy_change_neither_moves_a_pinned_mechanism_nor_closes_the_book() -> None:
    world = pinned_world(MARKET_UNIFORM_PRICE)
    place(world, "battery", bid(100, 500))
    changed = world.submit("operator", {"kind": "policy_set", "params": {"market_mechanism": MARKET_CONTINUOUS}})
    assert isinstance(changed, Accepted) and not effects(changed, "order_close")
    assert world.state.policy["market_mechanism"] == MARKET_UNIFORM_PRICE
    assert world.state.policy_version == 2  # the change is still recorded, as the log has it
    assert list(world.state.orders) == ["battery/p1"]
    escrow_matches_the_book(world.state)


def test_a_pinned_state_is_never_snapshotted() -> None:
    with pytest.raises(AssertionError, match="never a checkpoint"):
        to_json(State.pinned({"market_mechanism": MARKET_UNIFORM_PRICE}))
