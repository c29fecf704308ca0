"""Records the relay publishes match their published schemas, byte for byte what consumers parse."""

from __future__ import annotations

import orjson

from core.outgoing import entry_records, rejection_record
from core.rows import Rejection
from schemas.records import AlertRecord, IncidentRecord, LedgerEvent, RejectionRecord
from tests.support.world import OPERATOR, World, account


def test_ledger_events_alerts_and_incidents_validate_against_their_models() -> None:
    world = World().start(breaker_critical_shortfall_max=0)
    world.submit(
        "solar",
        {
            "kind": "transfer",
            "from_account": account("solar"),
            "to_account": account("battery"),
            "resource": "energy",
            "quantity": 5,
        },
    )
    world.meter(1, [{"account": account("hospital"), "resource": "energy", "consumed": 2_000_000}])
    resume = {"kind": "breaker_resume", "reason": "generator on", "trip_seq": world.state.breaker_trip_seq}
    world.submit(OPERATOR, resume)
    by_topic: dict[str, list[bytes]] = {}
    for entry in world.entries:
        for topic, _key, value in entry_records(entry):
            by_topic.setdefault(topic, []).append(value)
    events = [LedgerEvent.model_validate_json(v) for v in by_topic["ledger-events"]]
    assert [e.seq for e in events] == [e.seq for e in world.entries]
    assert events[1].postings == [(account("solar"), "energy", -5), (account("battery"), "energy", 5)]
    alerts = [AlertRecord.model_validate_json(v) for v in by_topic["alerts"]]
    assert [(a.kind, a.severity) for a in alerts] == [("breaker_trip", "critical"), ("breaker_resume", "info")]
    assert alerts[0].telemetry["critical_shortfall"] == 1_000_000
    assert [IncidentRecord.model_validate_json(v).kind for v in by_topic["incidents"]] == ["breaker_trip"]


def test_rejection_records_carry_provenance_and_a_stable_key() -> None:
    provenance = orjson.dumps({"source": "gemini", "model": "m", "rationale": "why"}).decode()
    row = Rejection(41, "p1", "solar", "offer", "PRICE_CEILING", "body.price", "too dear", 3, "v1", 2, provenance, 7)
    topic, key, value = rejection_record(row)
    record = RejectionRecord.model_validate_json(value)
    assert (topic, key) == ("rejections", b"rej:41")
    assert record.provenance is not None and record.provenance.rationale == "why"
    assert (record.agent, record.kind) == ("solar", "offer")
    copied = {name: getattr(row, name) for name in Rejection.__struct_fields__ if name != "provenance_json"}
    assert record.model_dump(exclude={"v", "rejection_id", "provenance"}) == copied


def test_an_unauthenticated_rejection_names_no_agent_and_no_provenance() -> None:
    provenance = orjson.dumps({"source": "gemini", "model": "[click](http://x)", "rationale": "![i](http://x)"})
    row = Rejection(9, "p9", "hospital", "transfer", "BAD_SIGNATURE", "sig", "bad", 3, "v1", 2, provenance.decode())
    record = RejectionRecord.model_validate_json(rejection_record(row)[2])
    assert (record.agent, record.kind, record.provenance, record.nonce) == (None, None, None, None)
