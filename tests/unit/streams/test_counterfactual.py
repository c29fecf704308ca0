"""The same log decided twice in memory: as it was (the head must match) and under a pinned market
mechanism (only the matching differs)."""

from __future__ import annotations

import pytest

from law import Accepted
from streams.counterfactual import decide_both, mechanism_pins
from streams.replay_errors import ReplayError
from tests.support.world import World, keyring
from tests.unit.law.test_book import SELLER, ask, bid, place


def continuous_log() -> World:
    """The hand-worked clearing case's orders, sent to a continuous book, then a meter entry."""
    world = World().start()
    for agent, order in [
        ("battery", bid(300, 700)), ("hospital", bid(200, 600)), ("datacentre", bid(200, 400)),
        (SELLER, ask(250, 350)), ("datacentre", ask(200, 550)),
    ]:  # fmt: skip
        place(world, agent, order)
    assert isinstance(world.meter(1, []), Accepted)
    return world


def test_as_decided_reproduces_the_ledger_and_the_pinned_log_clears_at_the_meter() -> None:
    world = continuous_log()
    as_decided, pinned = decide_both(enumerate(world.raws), keyring(), "test", "clearing")
    assert as_decided.head_hash == world.entries[-1].hash and as_decided.entries == len(world.entries)
    assert as_decided.rejected_by_reason == pinned.rejected_by_reason == {}
    live = as_decided.figures.resources["energy"]
    # Continuous: the asks took the resting bids as they came: solar's 250 at 700, datacentre's 200
    # (50 at 700, 150 at 600).
    assert live.volume == 450 and live.paid_mc == 175 + 35 + 90
    cleared = pinned.figures.resources["energy"]
    # Uniform price: the same 450 units, all at the marginal ask's 550, in the meter entry's tick.
    assert cleared.volume == 450 and cleared.per_tick == {1: [450, 138 + 27 + 83]}
    assert pinned.figures.surplus_mc == as_decided.figures.surplus_mc  # the same pairs of limits


def test_a_mechanism_by_another_name_is_refused() -> None:
    with pytest.raises(ReplayError, match="choose from book, clearing"):
        mechanism_pins("auction")
