"""Each rule of the law, with the reason code it must produce."""

from __future__ import annotations

import orjson
import pytest

from law import Accepted, Rejected
from law.ledger import as_accepted
from law.state import inconsistency
from schemas.codec import encode
from tests.support.world import OPERATOR, World, account


def reason(decision: Accepted | Rejected) -> str:
    return decision.reason_code if isinstance(decision, Rejected) else "ACCEPTED"


def transfer(src: str, dst: str, qty: int, resource: str = "energy") -> dict:
    return {
        "kind": "transfer",
        "from_account": account(src),
        "to_account": account(dst),
        "resource": resource,
        "quantity": qty,
    }


def offer(seller: str, qty: int, price: int, until: int = 5, resource: str = "energy") -> dict:
    return {
        "kind": "offer",
        "account": account(seller),
        "resource": resource,
        "quantity": qty,
        "price": price,
        "open_until_tick": until,
    }


@pytest.fixture
def world() -> World:
    return World().start()


def test_first_entry_must_be_genesis() -> None:
    w = World()
    assert reason(w.submit("solar", transfer("solar", "battery", 1))) == "GENESIS_REQUIRED"
    w.start()
    assert reason(w.submit(OPERATOR, {"kind": "genesis", "participants": [], "balances": []})) == "MALFORMED"


def test_transfer_moves_balance(world: World) -> None:
    assert reason(world.submit("solar", transfer("solar", "battery", 500))) == "ACCEPTED"
    assert world.state.balance(account("solar"), "energy") == 1_000_000 - 500
    assert world.state.balance(account("battery"), "energy") == 1_000_000 + 500


@pytest.mark.parametrize(
    ("agent", "body", "code"),
    [
        ("solar", transfer("battery", "solar", 1), "NOT_OWNER"),
        ("solar", transfer("solar", "battery", 2_000_000), "INSUFFICIENT_BALANCE"),
        ("solar", transfer("solar", "solar", 1), "SELF_TRADE"),
        ("ghost", transfer("solar", "battery", 1), "UNKNOWN_AGENT"),
        ("solar", {**transfer("solar", "battery", 1), "to_account": "nowhere"}, "UNKNOWN_ACCOUNT"),
        ("solar", {"kind": "meter", "readings": []}, "UNAUTHORIZED"),
        ("solar", {"kind": "policy_set", "params": {"carbon_tax_bps": 1}}, "UNAUTHORIZED"),
        ("solar", {"kind": "accept", "offer_id": "nope", "account": account("solar")}, "OFFER_NOT_OPEN"),
        ("solar", offer("solar", 10, 10, resource="credits"), "MALFORMED"),
    ],
)
def test_rejections_name_the_rule(world: World, agent: str, body: dict, code: str) -> None:
    before = world.state.copy()
    assert reason(world.submit(agent, body)) == code
    assert world.state == before


def test_bad_signature_and_duplicate(world: World) -> None:
    env = world.envelope("solar", transfer("solar", "battery", 1), pid="dup")
    forged = {**env, "body": {**env["body"], "quantity": 900_000}}
    assert reason(world.submit_raw(encode(forged))) == "BAD_SIGNATURE"
    assert reason(world.submit_raw(encode(env))) == "ACCEPTED"
    assert reason(world.submit_raw(encode(env))) == "DUPLICATE_PROPOSAL"


def test_expiry_window_and_pruning(world: World) -> None:
    assert reason(world.submit("solar", transfer("solar", "battery", 1), ttl=1000)) == "LIMIT_EXCEEDED"
    env = world.envelope("solar", transfer("solar", "battery", 1), pid="old", ttl=2)
    assert reason(world.submit_raw(encode(env))) == "ACCEPTED"
    assert reason(world.meter(5, [])) == "ACCEPTED"
    assert "old" not in world.state.seen  # memory is bounded by the expiry window
    assert reason(world.submit_raw(encode(env))) == "EXPIRED"


def test_offer_accept_moves_both_legs_and_taxes_emitters() -> None:
    world = World().start(carbon_tax_bps=1000)
    assert reason(world.submit("solar", offer("solar", 1000, 5000), pid="o1")) == "ACCEPTED"
    assert (
        reason(world.submit("solar", {"kind": "accept", "offer_id": "o1", "account": account("solar")})) == "SELF_TRADE"
    )
    assert (
        reason(world.submit("hospital", {"kind": "accept", "offer_id": "o1", "account": account("hospital")}))
        == "ACCEPTED"
    )
    s = world.state
    assert s.balance(account("hospital"), "energy") == 1_001_000
    assert s.balance(account("hospital"), "credits") == 995_000
    assert s.balance(account("solar"), "credits") == 1_000_000 + 5000 - 500  # 10 % tax, floor
    assert s.balance("system:treasury", "credits") == 500
    assert "o1" not in s.offers
    assert (
        reason(world.submit("battery", {"kind": "accept", "offer_id": "o1", "account": account("battery")}))
        == "OFFER_NOT_OPEN"
    )


def test_unmatched_offer_expires_and_cancel_needs_owner(world: World) -> None:
    assert reason(world.submit("solar", offer("solar", 10, 10, until=2), pid="o2")) == "ACCEPTED"
    assert reason(world.submit("battery", {"kind": "cancel", "offer_id": "o2"})) == "NOT_OWNER"
    assert reason(world.meter(3, [])) == "ACCEPTED"
    assert "o2" not in world.state.offers
    assert (
        reason(world.submit("battery", {"kind": "accept", "offer_id": "o2", "account": account("battery")}))
        == "OFFER_NOT_OPEN"
    )


def test_meter_serves_demand_and_records_shortfall(world: World) -> None:
    readings = [
        {"account": account("solar"), "resource": "energy", "produced": 5000},
        {"account": account("hospital"), "resource": "energy", "consumed": 1_200_000},
    ]
    assert reason(world.meter(1, readings)) == "ACCEPTED"
    assert world.state.tick == 1
    assert world.state.balance(account("hospital"), "energy") == 0
    assert world.state.shortfall == {(account("hospital"), "energy"): 200_000}
    assert world.state.telemetry.critical_shortfall == 200_000


def test_policy_caps_ceiling_and_rate_limit() -> None:
    world = World().start(trade_quantity_max_energy=100, price_ceiling_energy=2000, proposals_per_tick_max=2)
    assert reason(world.submit("solar", transfer("solar", "battery", 101))) == "POLICY_CAP"
    assert reason(world.submit("solar", offer("solar", 100, 201))) == "PRICE_CEILING"  # 2010 per 1000 > 2000
    assert reason(world.submit("solar", offer("solar", 100, 200))) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "RATE_LIMITED"
    assert reason(world.meter(1, [])) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"


def test_policy_change_applies_from_the_next_entry(world: World) -> None:
    assert world.state.policy_version == 1
    assert (
        reason(world.submit(OPERATOR, {"kind": "policy_set", "params": {"trade_quantity_max_energy": 5}})) == "ACCEPTED"
    )
    assert world.entries[-1].policy_version == 1  # decided under the old policy
    assert world.state.policy_version == 2
    assert reason(world.submit("solar", transfer("solar", "battery", 6))) == "POLICY_CAP"
    assert reason(world.submit("solar", transfer("solar", "battery", 5))) == "ACCEPTED"
    assert world.entries[-1].policy_version == 2
    bad = {"kind": "policy_set", "params": {"no_such_knob": 1}}
    assert reason(world.submit(OPERATOR, bad)) == "BAD_POLICY"


def test_breaker_trips_blocks_trades_passes_meters_and_resumes_by_human() -> None:
    world = World().start(breaker_critical_shortfall_max=0)
    short = [{"account": account("hospital"), "resource": "energy", "consumed": 2_000_000}]
    assert reason(world.meter(1, short)) == "ACCEPTED"
    trip = orjson.loads(world.entries[-1].effects_json)[-1]
    assert trip["t"] == "breaker" and trip["open"] and trip["telemetry"]["critical_shortfall"] == 1_000_000
    assert world.state.breaker_open
    assert reason(world.submit("solar", transfer("solar", "hospital", 1))) == "CIRCUIT_OPEN"
    assert reason(world.meter(2, [])) == "ACCEPTED"
    assert reason(world.submit("solar", {"kind": "breaker_resume", "reason": "me"})) == "UNAUTHORIZED"
    assert reason(world.submit(OPERATOR, {"kind": "breaker_resume", "reason": "load shed by hand"})) == "ACCEPTED"
    assert not world.state.breaker_open
    assert reason(world.submit("solar", transfer("solar", "hospital", 1))) == "ACCEPTED"


def test_interest_is_paid_at_period_boundaries() -> None:
    world = World().start(interest_bps=100, interest_period_ticks=10)
    assert reason(world.meter(9, [])) == "ACCEPTED"
    assert world.state.balance(account("solar"), "credits") == 1_000_000
    assert reason(world.meter(10, [])) == "ACCEPTED"
    assert world.state.balance(account("solar"), "credits") == 1_010_000
    assert world.state.balance("system:treasury", "credits") == -4 * 10_000


def test_participants_add_and_suspend(world: World) -> None:
    from tests.support.world import participant

    add = {"kind": "participant_add", "participant": participant("newcomer")}
    assert reason(world.submit(OPERATOR, add)) == "ACCEPTED"
    assert reason(world.submit(OPERATOR, {"kind": "participant_suspend", "agent": "battery"})) == "ACCEPTED"
    assert reason(world.submit("battery", transfer("battery", "solar", 1))) == "SUSPENDED"
    assert reason(world.submit("newcomer", transfer("newcomer", "solar", 1))) == "INSUFFICIENT_BALANCE"


def test_an_entry_that_cannot_follow_the_state_is_named_before_it_is_applied(world: World) -> None:
    assert reason(world.submit("solar", offer("solar", 10, 10), pid="o9")) == "ACCEPTED"
    assert reason(world.submit("solar", {"kind": "cancel", "offer_id": "o9"})) == "ACCEPTED"
    cancel = as_accepted(world.entries[-1])
    assert inconsistency(world.state, cancel) == "closes offer 'o9', which is not open"
