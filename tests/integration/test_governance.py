"""Governance through the real path: signed commands on the proposals topic, the real validator, the ledger."""

from __future__ import annotations

import threading
import uuid

import orjson
import psycopg
import pytest

from connectors import governance
from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import audit_database, producer_position
from core.config import Settings
from schemas.codec import encode, sign
from schemas.envelope import build
from schemas.keys import derive_key
from schemas.signing import HmacSigner, Signer, key_fingerprint
from streams.validator import open_validator
from streams.workload import METER, OPERATOR, genesis, stream_signer, synthetic_operator
from tests.integration.test_validator import SECRET, VERSION, consume_keys, settings
from tests.support.fold import workload_keyring

__all__ = ["settings"]

AGENTS = ["hospital", "solar"]


@pytest.fixture(autouse=True)
def operator_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRID_KEY_SECRET", SECRET.hex())


def decide_all(settings: Settings) -> None:
    open_validator(settings, SECRET, version=VERSION).run(threading.Event(), idle_exit_s=0.5)


def start(settings: Settings, **policy: int) -> None:
    raw = orjson.loads(genesis(SECRET, AGENTS, "genesis", policy))
    next(p for p in raw["body"]["participants"] if p["agent"] == "hospital")["critical_load"] = True
    send_proposals(settings, [encode(sign(raw, stream_signer(SECRET, OPERATOR)))])
    decide_all(settings)


def send_as(settings: Settings, agent: str, body: dict, tick: int = 0, signer: Signer | None = None) -> str:
    _, decided = producer_position(settings.database_url, agent)
    signer = signer or stream_signer(SECRET, agent)
    proposal = build(agent, body, tick, 10, signer, f"t-{uuid.uuid4()}", decided + 1)
    send_proposals(settings, [encode(proposal)])
    return str(proposal["id"])


def as_operator(settings: Settings, body: dict) -> str:
    """A governance command through the CLI's and console's path, signed by the stream's operator."""
    return governance.send(settings, body, OPERATOR, synthetic_operator(SECRET))


def outcome(settings: Settings, pid: str) -> tuple[str, int | None]:
    decide_all(settings)
    with psycopg.connect(settings.database_url) as conn:
        entry = conn.execute("SELECT policy_version FROM ledger WHERE proposal_id = %s", (pid,)).fetchone()
        if entry:
            return "ACCEPTED", entry[0]
        row = conn.execute("SELECT reason_code FROM rejections WHERE proposal_id = %s", (pid,)).fetchone()
    assert row is not None, f"{pid} was never decided"
    return row[0], None


def transfer(qty: int) -> dict:
    return {
        "kind": "transfer",
        "from_account": "solar:main",
        "to_account": "hospital:main",
        "resource": "energy",
        "quantity": qty,
    }


def test_policy_change_applies_from_the_next_entry_and_is_versioned(settings: Settings) -> None:
    start(settings)
    assert outcome(settings, send_as(settings, "solar", transfer(500))) == ("ACCEPTED", 1)
    pid = as_operator(settings, governance.policy_set({"trade_quantity_max_energy": 100}, "cap trades"))
    assert outcome(settings, pid) == ("ACCEPTED", 1)
    assert outcome(settings, send_as(settings, "solar", transfer(500))) == ("POLICY_CAP", None)
    assert outcome(settings, send_as(settings, "solar", transfer(100))) == ("ACCEPTED", 2)


def test_a_rekey_takes_effect_from_the_next_entry_and_every_old_entry_still_verifies(settings: Settings) -> None:
    start(settings)
    assert outcome(settings, send_as(settings, "solar", transfer(5)))[0] == "ACCEPTED"
    new_key = derive_key(SECRET, "solar", 1)
    rekey = {"kind": "participant_rekey", "agent": "solar", "key_fingerprint": key_fingerprint(new_key)}
    wrong = {**rekey, "key_fingerprint": key_fingerprint(derive_key(SECRET, "solar", 2))}
    assert outcome(settings, as_operator(settings, wrong)) == ("UNKNOWN_KEY", None)
    assert outcome(settings, as_operator(settings, rekey))[0] == "ACCEPTED"
    assert outcome(settings, send_as(settings, "solar", transfer(5))) == ("BAD_SIGNATURE", None)
    assert outcome(settings, send_as(settings, "solar", transfer(5), signer=HmacSigner(new_key)))[0] == "ACCEPTED"
    # The operator rotates their own key: the old one signs nothing from then on.
    successor = synthetic_operator(SECRET + b"rotated")
    rotate = {"kind": "participant_rekey", "agent": OPERATOR, "public_key": successor.public_key}
    assert outcome(settings, as_operator(settings, rotate))[0] == "ACCEPTED"
    trip = governance.breaker("trip", "drill")
    assert outcome(settings, as_operator(settings, trip)) == ("BAD_SIGNATURE", None)
    assert outcome(settings, governance.send(settings, trip, OPERATOR, successor))[0] == "ACCEPTED"
    report = audit_database(settings.database_url, workload_keyring(SECRET))
    assert report.ok, report.problems


def test_a_non_operator_governance_command_is_unauthorized(settings: Settings) -> None:
    start(settings)
    pid = send_as(settings, "solar", governance.policy_set({"carbon_tax_per_kwh": 0}))
    assert outcome(settings, pid) == ("UNAUTHORIZED", None)
    pid = send_as(settings, "solar", governance.breaker("trip", "I want to stop everyone"))
    assert outcome(settings, pid) == ("UNAUTHORIZED", None)


def test_breaker_trips_on_telemetry_alerts_blocks_trades_and_resumes_by_signed_command(settings: Settings) -> None:
    start(settings, breaker_critical_shortfall_max=0)
    short = {"kind": "meter", "readings": [{"account": "hospital:main", "resource": "energy", "consumed": 2 * 10**12}]}
    assert outcome(settings, send_as(settings, METER, short, tick=1))[0] == "ACCEPTED"
    assert outcome(settings, send_as(settings, "solar", transfer(10), tick=1)) == ("CIRCUIT_OPEN", None)
    meter = {"kind": "meter", "readings": [{"account": "solar:main", "resource": "energy", "produced": 10}]}
    assert outcome(settings, send_as(settings, METER, meter, tick=2))[0] == "ACCEPTED"
    with psycopg.connect(settings.database_url) as conn:
        seq = conn.execute("SELECT seq FROM ledger WHERE effects_json LIKE '%%\"breaker\"%%'").fetchone()[0]
    assert consume_keys(settings, "alerts", 1) == {f"breaker:{seq}"}
    assert consume_keys(settings, "incidents", 1) == {f"breaker:{seq}"}

    resume = governance.breaker("resume", "hospital load moved to backup generator", trip_seq=seq)
    pid = as_operator(settings, resume)
    assert outcome(settings, pid)[0] == "ACCEPTED"
    assert outcome(settings, send_as(settings, "solar", transfer(10), tick=2))[0] == "ACCEPTED"
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT breaker_open FROM grid_status").fetchone()[0] is False


def test_a_rejection_spike_above_the_policy_threshold_raises_one_alert(settings: Settings) -> None:
    start(settings, rejection_spike_per_tick=5)
    send_proposals(settings, [b"not json %d" % i for i in range(12)])
    decide_all(settings)
    assert consume_keys(settings, "alerts", 1) == {"spike:0"}
