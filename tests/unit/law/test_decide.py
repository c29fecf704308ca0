"""Each rule of the law, with the reason code it must produce."""

from __future__ import annotations

import orjson
import pytest

from law import Accepted, Rejected
from law.ledger import as_accepted
from law.snapshot import from_json, to_json
from law.state import consume, inconsistency
from schemas.codec import encode
from schemas.envelope import build
from schemas.keys import derive_key
from schemas.signing import HmacSigner, key_fingerprint
from schemas.types import BALANCE_MAX, RESOURCES
from tests.support.world import (
    AGENTS,
    METER,
    OPERATOR,
    SECRET,
    World,
    account,
    genesis_body,
    operator_key,
    refold,
    signer,
)


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
        ("solar", {"kind": "policy_set", "params": {"carbon_tax_per_kwh": 1}}, "UNAUTHORIZED"),
        ("solar", {"kind": "accept", "offer_id": "battery/nope", "account": account("solar")}, "OFFER_NOT_OPEN"),
        ("solar", offer("solar", 10, 10, resource="credits"), "MALFORMED"),
    ],
)
def test_rejections_name_the_rule(world: World, agent: str, body: dict, code: str) -> None:
    before = world.state.copy()
    assert reason(world.submit(agent, body)) == code
    if agent in world.state.agents:  # authenticated: the refusal used the nonce up, and nothing else
        consume(before, agent, world.nonces[agent])
    assert world.state == before


def test_bad_signature_and_duplicate(world: World) -> None:
    env = world.envelope("solar", transfer("solar", "battery", 1), pid="dup")
    forged = {**env, "body": {**env["body"], "quantity": 900_000}}
    assert reason(world.submit_raw(encode(forged))) == "BAD_SIGNATURE"
    assert reason(world.submit_raw(encode(env))) == "ACCEPTED"
    assert reason(world.submit_raw(encode(env))) == "DUPLICATE_PROPOSAL"


def test_expiry_window(world: World) -> None:
    assert reason(world.submit("solar", transfer("solar", "battery", 1), ttl=1000)) == "LIMIT_EXCEEDED"
    env = world.envelope("solar", transfer("solar", "battery", 1), pid="old", ttl=2)
    assert reason(world.meter(5, [])) == "ACCEPTED"
    assert reason(world.submit_raw(encode(env))) == "EXPIRED"


def test_a_decided_nonce_is_final_accepted_or_refused(world: World) -> None:
    paid = world.envelope("solar", transfer("solar", "battery", 1))
    assert reason(world.submit_raw(encode(paid))) == "ACCEPTED"
    refused = world.envelope("solar", transfer("solar", "battery", 2_000_000))
    assert reason(world.submit_raw(encode(refused))) == "INSUFFICIENT_BALANCE"
    assert world.state.nonces["solar"] == refused["nonce"]
    # Sent again, or with an older nonce, either is decided already; memory is one number per agent.
    assert reason(world.submit_raw(encode(paid))) == "DUPLICATE_PROPOSAL"
    assert reason(world.submit_raw(encode(refused))) == "DUPLICATE_PROPOSAL"
    stale = world.envelope("solar", transfer("solar", "battery", 1), nonce=paid["nonce"])
    assert reason(world.submit_raw(encode(stale))) == "DUPLICATE_PROPOSAL"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"  # gaps are fine


def test_a_payment_refused_while_the_breaker_was_open_is_not_paid_after_the_resume() -> None:
    world = World().start(breaker_critical_shortfall_max=0)
    world.meter(1, [{"account": account("hospital"), "resource": "energy", "consumed": 2_000_000}])
    payment = world.envelope("solar", transfer("solar", "battery", 10))
    assert reason(world.submit_raw(encode(payment))) == "CIRCUIT_OPEN"
    resume = {"kind": "breaker_resume", "reason": "backup on", "trip_seq": world.state.breaker_trip_seq}
    assert reason(world.submit(OPERATOR, resume)) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 10))) == "ACCEPTED"  # re-issued
    balance = world.state.balance(account("battery"), "energy")
    assert reason(world.submit_raw(encode(payment))) == "DUPLICATE_PROPOSAL"  # the original, re-sent
    assert world.state.balance(account("battery"), "energy") == balance


def test_an_unauthenticated_message_uses_up_no_nonce(world: World) -> None:
    env = world.envelope("solar", transfer("solar", "battery", 1))
    forged = {**env, "body": {**env["body"], "quantity": 900_000}}
    assert reason(world.submit_raw(encode(forged))) == "BAD_SIGNATURE"
    assert reason(world.submit_raw(encode(env))) == "ACCEPTED"  # the real one, same nonce, still decides


def test_ids_are_per_agent_so_nobody_takes_anothers_offer_name(world: World) -> None:
    assert reason(world.submit("battery", offer("battery", 10, 10), pid="sale")) == "ACCEPTED"
    assert reason(world.submit("solar", offer("solar", 10, 10), pid="sale")) == "ACCEPTED"
    assert set(world.state.offers) == {"battery/sale", "solar/sale"}
    assert reason(world.submit("solar", offer("solar", 5, 5), pid="sale")) == "DUPLICATE_OFFER"


def accept(buyer: str, offer_id: str) -> dict:
    return {"kind": "accept", "offer_id": offer_id, "account": account(buyer)}


def test_offer_accept_moves_both_legs_and_taxes_emitters() -> None:
    world = World().start(carbon_tax_per_kwh=300)
    assert reason(world.submit("solar", offer("solar", 1500, 5000), pid="o1")) == "ACCEPTED"
    assert reason(world.submit("solar", accept("solar", "solar/o1"))) == "SELF_TRADE"
    assert reason(world.submit("hospital", accept("hospital", "solar/o1"))) == "ACCEPTED"
    s = world.state
    assert s.balance(account("hospital"), "energy") == 1_001_500
    assert s.balance(account("hospital"), "credits") == 995_000
    assert s.balance(account("solar"), "credits") == 1_000_000 + 5000 - 450  # 1.5 kWh at 300 per kWh
    assert s.balance("system:treasury", "credits") == 450
    assert "solar/o1" not in s.offers
    assert reason(world.submit("battery", accept("battery", "solar/o1"))) == "OFFER_NOT_OPEN"


def test_carbon_tax_is_by_quantity_rounded_up_and_covers_free_trades_and_transfers() -> None:
    world = World().start(carbon_tax_per_kwh=300)
    assert reason(world.submit("solar", offer("solar", 1000, 0), pid="free")) == "ACCEPTED"
    assert reason(world.submit("hospital", accept("hospital", "solar/free"))) == "ACCEPTED"
    assert world.state.balance("system:treasury", "credits") == 300  # a price of 0 still pays
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"
    assert world.state.balance("system:treasury", "credits") == 301  # 1 Wh: 0.3 rounded up to 1
    assert reason(world.submit("battery", transfer("battery", "hospital", 1000))) == "ACCEPTED"
    assert world.state.balance("system:treasury", "credits") == 301  # not an emitter


def test_caps_hold_at_the_trade_and_the_credits_cap_bounds_the_price(world: World) -> None:
    assert reason(world.submit("solar", offer("solar", 500, 700), pid="o1")) == "ACCEPTED"
    caps = {"trade_quantity_max_energy": 100, "trade_quantity_max_credits": 600}
    assert reason(world.submit(OPERATOR, {"kind": "policy_set", "params": caps})) == "ACCEPTED"
    assert reason(world.submit("hospital", accept("hospital", "solar/o1"))) == "POLICY_CAP"
    assert reason(world.submit("solar", offer("solar", 50, 601))) == "POLICY_CAP"


def test_suspension_closes_the_agents_offers(world: World) -> None:
    assert reason(world.submit("solar", offer("solar", 10, 10), pid="o1")) == "ACCEPTED"
    assert reason(world.submit(OPERATOR, {"kind": "participant_suspend", "agent": "solar"})) == "ACCEPTED"
    assert world.state.offers == {}
    assert reason(world.submit("hospital", accept("hospital", "solar/o1"))) == "OFFER_NOT_OPEN"


def test_unmatched_offer_expires_and_cancel_needs_owner(world: World) -> None:
    assert reason(world.submit("solar", offer("solar", 10, 10, until=2), pid="o2")) == "ACCEPTED"
    assert reason(world.submit("battery", {"kind": "cancel", "offer_id": "solar/o2"})) == "NOT_OWNER"
    assert reason(world.meter(3, [])) == "ACCEPTED"
    assert "solar/o2" not in world.state.offers
    assert reason(world.submit("battery", accept("battery", "solar/o2"))) == "OFFER_NOT_OPEN"


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


def test_policy_caps_ceiling_and_rate_limits() -> None:
    world = World().start(trade_quantity_max_energy=100, price_ceiling_energy=2000, proposals_per_tick_max=2)
    assert reason(world.submit("solar", transfer("solar", "battery", 101))) == "POLICY_CAP"
    assert reason(world.submit("solar", offer("solar", 100, 201))) == "PRICE_CEILING"  # 2010 per 1000 > 2000
    assert reason(world.submit("solar", offer("solar", 100, 200))) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "RATE_LIMITED"
    assert reason(world.meter(1, [])) == "ACCEPTED"
    assert reason(world.submit("solar", transfer("solar", "battery", 1))) == "ACCEPTED"
    grid_cap = {"kind": "policy_set", "params": {"proposals_per_tick_grid_max": 2}}
    assert reason(world.submit(OPERATOR, grid_cap)) == "ACCEPTED"
    assert reason(world.submit("battery", transfer("battery", "solar", 1))) == "RATE_LIMITED"  # 2 on the grid


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
    stale = {"kind": "policy_set", "params": {"trade_quantity_max_energy": 9}, "expected_policy_version": 1}
    assert reason(world.submit(OPERATOR, stale)) == "STALE_COMMAND"
    current = {**stale, "expected_policy_version": 2}
    assert reason(world.submit(OPERATOR, current)) == "ACCEPTED"


def test_breaker_trips_blocks_trades_passes_meters_and_resumes_by_human() -> None:
    world = World().start(breaker_critical_shortfall_max=0)
    short = [{"account": account("hospital"), "resource": "energy", "consumed": 2_000_000}]
    assert reason(world.meter(1, short)) == "ACCEPTED"
    trip = orjson.loads(world.entries[-1].effects_json)[-1]
    assert trip["t"] == "breaker" and trip["open"] and trip["telemetry"]["critical_shortfall"] == 1_000_000
    assert world.state.breaker_open
    assert reason(world.submit("solar", transfer("solar", "hospital", 1))) == "CIRCUIT_OPEN"
    assert reason(world.meter(2, [])) == "ACCEPTED"
    trip_seq = world.entries[-2].seq
    assert world.state.breaker_trip_seq == trip_seq
    resume = {"kind": "breaker_resume", "reason": "load shed by hand", "trip_seq": trip_seq}
    assert reason(world.submit("solar", resume)) == "UNAUTHORIZED"
    assert reason(world.submit(OPERATOR, {**resume, "trip_seq": trip_seq - 1})) == "STALE_COMMAND"
    assert reason(world.submit(OPERATOR, resume)) == "ACCEPTED"
    assert not world.state.breaker_open
    assert reason(world.submit("solar", transfer("solar", "hospital", 1))) == "ACCEPTED"


def test_an_old_resume_cannot_close_the_next_trip() -> None:
    from tests.support.world import participant

    world = World().start(breaker_critical_shortfall_max=0, breaker_grace_ticks=0)
    world.submit(OPERATOR, {"kind": "participant_add", "participant": participant("operator-b", "operator")})
    short = [{"account": account("hospital"), "resource": "energy", "consumed": 2_000_000}]
    world.meter(1, short)
    first = {"kind": "breaker_resume", "reason": "first trip", "trip_seq": world.state.breaker_trip_seq}
    # A second operator resumes the same trip; their command is delivered late, after the next trip.
    late = world.envelope("operator-b", {**first, "reason": "also resuming"})
    assert reason(world.submit(OPERATOR, first)) == "ACCEPTED"
    world.meter(2, short)
    assert world.state.breaker_open and world.state.breaker_trip_seq != first["trip_seq"]
    assert reason(world.submit_raw(encode(late))) == "STALE_COMMAND"  # signed for the first trip
    assert world.state.breaker_open


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
    assert reason(world.submit("solar", {"kind": "cancel", "offer_id": "solar/o9"})) == "ACCEPTED"
    cancel = as_accepted(world.entries[-1])
    assert inconsistency(world.state, cancel) == "closes offer 'solar/o9', which is not open"


def test_grid_bookings_are_capped_at_the_balance_bound_and_the_clock_keeps_going() -> None:
    world = World().start(opening=10**15, interest_bps=1_000, interest_period_ticks=1)
    for tick in range(1, 60):  # 10 % a tick, and meters at the schema's own limit, every tick
        readings = [{"account": account(a), "resource": r, "produced": 10**15} for a in AGENTS for r in RESOURCES]
        assert reason(world.meter(tick, readings)) == "ACCEPTED"
    values = world.state.balances.values()
    assert max(abs(v) for v in values) == BALANCE_MAX  # reached, and never crossed
    assert from_json(to_json(world.state)) == world.state  # the checkpoint encoder still holds it
    # What a participant asks for is refused instead: gather energy in one account past the bound.
    policy = {"kind": "policy_set", "params": {"trade_quantity_max_energy": 10**15}}
    assert reason(world.submit(OPERATOR, policy)) == "ACCEPTED"
    moves = [("datacentre", "solar")] * 3 + [("hospital", "solar")] * 2
    assert {reason(world.submit(a, transfer(a, b, 10**15))) for a, b in moves} == {"ACCEPTED"}
    assert world.state.balance(account("solar"), "energy") == 9 * 10**15
    assert reason(world.submit("hospital", transfer("hospital", "solar", 10**15))) == "LIMIT_EXCEEDED"


def test_a_genesis_whose_openings_cross_the_bound_is_refused() -> None:
    many = tuple(f"agent{i}" for i in range(10))  # 10 x 10^15 of each resource minted: over 2^53 - 1
    world = World()
    assert reason(world.submit(OPERATOR, genesis_body(agents=many, opening=10**15))) == "LIMIT_EXCEEDED"
    assert reason(world.submit(OPERATOR, genesis_body(agents=many[:9], opening=10**15))) == "ACCEPTED"


# --- principals: each role signs only its own kinds, with the key in force ------------------------


def test_each_role_signs_only_its_own_kinds() -> None:
    world = World().start()
    reading = {"kind": "meter", "readings": []}
    trip = {"kind": "breaker_trip", "reason": "drill"}
    assert reason(world.submit("solar", reading, tick=1)) == "UNAUTHORIZED"  # a participant is no meter
    assert reason(world.submit(OPERATOR, reading, tick=1)) == "UNAUTHORIZED"  # nor is a person
    assert reason(world.submit(METER, transfer("meter", "solar", 1))) == "UNAUTHORIZED"
    assert reason(world.submit(METER, trip)) == "UNAUTHORIZED"
    assert reason(world.submit(OPERATOR, transfer(OPERATOR, "solar", 1))) == "UNAUTHORIZED"
    assert reason(world.submit(METER, reading, tick=1)) == "ACCEPTED"
    assert reason(world.submit(OPERATOR, trip)) == "ACCEPTED"


def test_a_participant_key_cannot_sign_as_the_operator_or_another_participant() -> None:
    world = World().start()
    solar_key = signer("solar")
    as_operator = build(OPERATOR, {"kind": "breaker_trip", "reason": "x"}, 0, 10, solar_key, "forged-op", 1)
    as_hospital = build("hospital", transfer("hospital", "solar", 10), 0, 10, solar_key, "forged-h", 1)
    assert reason(world.submit_raw(encode(as_operator))) == "BAD_SIGNATURE"
    assert reason(world.submit_raw(encode(as_hospital))) == "BAD_SIGNATURE"


def test_only_a_founder_the_validator_trusts_can_sign_the_genesis() -> None:
    stranger = operator_key("stranger")
    body = genesis_body()
    body["participants"][0] = {**body["participants"][0], "public_key": stranger.public_key}
    world = World()
    raw = build(OPERATOR, body, 0, 10, stranger, "genesis", 1)
    assert reason(world.submit_raw(encode(raw))) == "UNAUTHORIZED"
    assert world.state.seq_next == 0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ({"key_fingerprint": "0" * 32}, "UNKNOWN_KEY"),
        ({"public_key": "ab" * 32}, "MALFORMED"),
        ({}, "MALFORMED"),
    ],
)
def test_a_participant_is_registered_with_a_key_the_validator_can_verify(key: dict, expected: str) -> None:
    world = World().start()
    new = {"agent": "newcomer", "role": "participant", **key, "accounts": ["newcomer:main"]}
    assert reason(world.submit(OPERATOR, {"kind": "participant_add", "participant": new})) == expected


def test_a_rekeyed_participant_signs_with_its_next_key_from_the_next_entry_on() -> None:
    world = World().start()
    old = world.envelope("solar", transfer("solar", "hospital", 1))
    next_key = derive_key(SECRET, "solar", 1)
    body = {"kind": "participant_rekey", "agent": "solar", "key_fingerprint": key_fingerprint(next_key)}
    assert reason(world.submit("solar", body)) == "UNAUTHORIZED"
    assert reason(world.submit(OPERATOR, body)) == "ACCEPTED"
    assert world.state.agents["solar"].key_generation == 1
    assert reason(world.submit_raw(encode(old))) == "BAD_SIGNATURE"  # signed before, sent after
    fresh = build("solar", transfer("solar", "hospital", 1), 0, 10, HmacSigner(next_key), "after", 3)
    assert reason(world.submit_raw(encode(fresh))) == "ACCEPTED"
    assert refold(world.decided) == world.state
