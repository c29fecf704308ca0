"""Invariants of the law over arbitrary proposal sequences (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from law import Accepted, Rejected, State, apply
from law.ledger import all_resources_balance, as_accepted, recompute_hash
from law.state import consume, inconsistency
from schemas.types import RESOURCES
from tests.support.world import AGENTS, OPERATOR, World, account, refold

agents = st.sampled_from(AGENTS)
quantities = st.integers(min_value=1, max_value=1_500_000)


def order(draw: st.DrawFn, side: str, actor: str) -> dict[str, Any]:
    """A bid or ask priced near the others (so books cross), from the actor's account or another's."""
    return {
        "kind": side,
        "account": account(draw(st.sampled_from([actor] * 5 + [draw(agents)]))),
        "resource": draw(st.sampled_from(("energy",) * 4 + ("water", "credits"))),
        "quantity": draw(st.integers(1, 400_000)),
        "price": draw(st.integers(400, 700)),
        "open_until_tick": draw(st.integers(0, 12)),
    }


@st.composite
def actions(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    # orders twice as often as the rest: the book needs several to cross
    kinds = [
        "transfer",
        "offer",
        "accept",
        "counter",
        "reject",
        "bid",
        "ask",
        "bid",
        "ask",
        "cancel",
        "meter",
        "policy",
    ]
    kind = draw(st.sampled_from(kinds))
    actor = draw(agents)
    if kind == "transfer":
        src = draw(st.sampled_from([actor, actor, draw(agents)]))  # mostly own account, sometimes not
        return actor, {
            "kind": "transfer",
            "from_account": account(src),
            "to_account": account(draw(agents)),
            "resource": draw(st.sampled_from(RESOURCES)),
            "quantity": draw(quantities),
        }
    if kind == "offer":
        return actor, {
            "kind": "offer",
            "account": account(actor),
            "resource": draw(st.sampled_from(("energy", "water"))),
            "quantity": draw(quantities),
            "price": draw(st.integers(0, 2_000_000)),
            "open_until_tick": draw(st.integers(0, 12)),
            **({"to_agent": draw(agents)} if draw(st.booleans()) else {}),  # a negotiation, half the time
        }
    if kind in ("bid", "ask"):
        return actor, order(draw, kind, actor)
    offer_id = f"{draw(agents)}/p{draw(st.integers(0, 40))}"
    if kind == "accept":
        return actor, {"kind": "accept", "offer_id": offer_id, "account": account(actor)}
    if kind == "cancel":
        return actor, {"kind": "cancel", "offer_id": offer_id}
    if kind == "counter":
        terms = {"quantity": draw(quantities), "price": draw(st.integers(0, 2_000_000))}
        return actor, {"kind": "counter", "offer_id": offer_id, "account": account(actor), **terms}
    if kind == "reject":
        return actor, {"kind": "reject", "offer_id": offer_id}
    if kind == "policy":
        params = {"carbon_tax_per_kwh": draw(st.integers(0, 10_000)), "market_mechanism": draw(st.integers(0, 1))}
        return OPERATOR, {"kind": "policy_set", "params": params}
    readings = [
        {
            "account": account(a),
            "resource": draw(st.sampled_from(RESOURCES)),
            "produced": draw(st.integers(0, 100_000)),
            "consumed": draw(st.integers(0, 1_200_000)),
        }
        for a in draw(st.lists(agents, max_size=4))
    ]
    return "__meter__", {"kind": "meter", "readings": readings}


def run(sequence: list[tuple[str, dict[str, Any]]]) -> tuple[World, list[Accepted | Rejected]]:
    world = World().start(interest_bps=50, interest_period_ticks=3, breaker_critical_shortfall_max=10**6)
    decisions = []
    tick = 0
    for actor, body in sequence:
        if actor == "__meter__":
            tick += 1
            decisions.append(world.meter(tick, body["readings"]))
        else:
            decisions.append(world.submit(actor, body))
    return world, decisions


sequences = st.lists(actions(), min_size=1, max_size=40)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(sequences)
def test_postings_sum_to_zero_and_resources_are_conserved(sequence: list) -> None:
    world, decisions = run(sequence)
    # Every entry, the genesis included, so each example checks at least one.
    assert len(world.entries) == 1 + sum(isinstance(d, Accepted) for d in decisions)
    for entry in world.entries:
        assert all_resources_balance(entry.postings)
    for resource in RESOURCES:
        assert sum(v for (_, r), v in world.state.balances.items() if r == resource) == 0


@fast
@given(sequences)
def test_no_participant_balance_goes_negative(sequence: list) -> None:
    world, _ = run(sequence)
    for (acct, _), value in world.state.balances.items():
        if not acct.startswith("system:"):
            assert value >= 0, (acct, value)


@fast
@given(sequences, actions())
def test_a_refusal_changes_nothing_but_the_agents_nonce(sequence: list, last: tuple[str, dict[str, Any]]) -> None:
    world, _ = run(sequence)
    before = world.state.copy()
    actor, body = last
    decision = (
        world.meter(world.state.tick + 1, body["readings"]) if actor == "__meter__" else world.submit(actor, body)
    )
    if isinstance(decision, Rejected):
        signer = OPERATOR if actor == "__meter__" else actor
        assert decision.consumes_nonce, "every proposal here is authenticated: its refusal is final"
        assert world.state == consume(before, signer, world.nonces[signer])
    else:
        assert world.state.seq_next == before.seq_next + 1


@fast
@given(sequences)
def test_same_sequence_same_hashes_and_fold_reproduces_state(sequence: list) -> None:
    first, _ = run(sequence)
    second, _ = run(sequence)
    assert [e.hash for e in first.entries] == [e.hash for e in second.entries]
    folded = State()
    for entry in first.entries:
        assert recompute_hash(entry) == entry.hash
        assert inconsistency(folded, as_accepted(entry)) is None
        apply(folded, as_accepted(entry))
    assert folded.balances == first.state.balances
    assert refold(first.decided) == first.state


@fast
@given(sequences)
def test_a_decided_proposal_sent_again_is_a_duplicate_whatever_its_first_fate(sequence: list) -> None:
    world, decisions = run(sequence)
    raws = [world.raws[i + 1] for i in range(len(decisions))]  # after the genesis
    for raw in raws[:8]:
        before = world.state.copy()
        decision = world.submit_raw(raw)
        assert isinstance(decision, Rejected) and decision.reason_code == "DUPLICATE_PROPOSAL"
        assert world.state == before
