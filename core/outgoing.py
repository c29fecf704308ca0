"""From decided rows to the records other consumers read: (topic name, key, JSON value) triples.

Keys are stable ids from the log, so a consumer that sees a record twice can drop the repeat:
``rej:{offset}`` for rejections, ``entry:{seq}`` for ledger events, ``breaker:{seq}`` for alerts and
incidents caused by a ledger entry.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.rows import Rejection
from law.ledger import Entry
from schemas.records import AlertRecord, IncidentRecord

Outgoing = tuple[str, bytes, bytes]  # (logical topic, key, value)
# The streams whose relay position is stored: ledger events by seq, rejections by source offset.
LEDGER_STREAM, REJECTION_STREAM = "ledger-events", "rejections"
# A breaker effect's key and value as orjson writes them (sorted keys, no spaces); within a string
# value its quotes would be escaped, so an entry whose effects lack this text has no breaker effect.
_BREAKER_EFFECT = '"t":"breaker"'


def rejection_record(r: Rejection) -> Outgoing:
    """The rejection as consumers read it (``RejectionRecord``, built with orjson directly like the
    ledger event; a unit test reads every field back through the model). An unauthenticated one
    carries no agent, kind or provenance downstream: those are only what an unknown sender claimed
    (the table keeps them, as evidence, for the ledger explorer)."""
    claimed = r.authenticated
    rejection_id = f"rej:{r.source_offset}"
    record = {
        "v": 1,
        "rejection_id": rejection_id,
        "source_offset": r.source_offset,
        "proposal_id": r.proposal_id,
        "agent": r.agent if claimed else None,
        "kind": r.kind if claimed else None,
        "reason_code": r.reason_code,
        "field": r.field,
        "detail": r.detail,
        "tick": r.tick,
        "validator_version": r.validator_version,
        "policy_version": r.policy_version,
        # the validated provenance's own JSON, written by its model: embedded as it is
        "provenance": orjson.Fragment(r.provenance_json) if r.provenance_json and claimed else None,
        "nonce": r.nonce,
    }
    return "rejections", rejection_id.encode(), orjson.dumps(record)


def entry_records(e: Entry) -> list[Outgoing]:
    """The ledger event (built with orjson directly: this runs per entry at full speed; a unit test
    checks the bytes against the LedgerEvent model), plus alerts and incidents for breaker effects."""
    event = {
        "v": 1,
        "seq": e.seq,
        "source_offset": e.source_offset,
        "proposal_id": e.proposal_id,
        "kind": e.kind,
        "agent": e.agent,
        "nonce": e.nonce,
        "tick": e.tick,
        "validator_version": e.validator_version,
        "policy_version": e.policy_version,
        "postings": e.postings,
        "effects": orjson.Fragment(e.effects_json),  # JSON the law's seal wrote: embedded, not re-parsed
        "prev_hash": e.prev_hash.hex(),
        "hash": e.hash.hex(),
        "provenance": orjson.loads(e.proposal_json).get("provenance") if '"provenance"' in e.proposal_json else None,
    }
    out: list[Outgoing] = [(LEDGER_STREAM, f"entry:{e.seq}".encode(), orjson.dumps(event))]
    if _BREAKER_EFFECT in e.effects_json:  # the rare entry with one parses its effects
        out += [
            r for effect in orjson.loads(e.effects_json) if effect["t"] == "breaker" for r in breaker_records(e, effect)
        ]
    return out


def breaker_records(e: Entry, effect: dict[str, Any]) -> list[Outgoing]:
    opened = bool(effect["open"])
    by = effect.get("by", e.agent)
    key = f"breaker:{e.seq}"
    verb = "tripped" if opened else "resumed"
    title = f"Circuit breaker {verb} at tick {e.tick} (seq {e.seq})"
    detail = f"{effect['reason']} — by {'the law' if by == 'law' else by}"
    telemetry = {k: int(v) for k, v in effect.get("telemetry", {}).items()}
    alert = AlertRecord(
        alert_id=key,
        kind="breaker_trip" if opened else "breaker_resume",
        severity="critical" if opened else "info",
        title=title,
        detail=detail,
        seq=e.seq,
        source_offset=e.source_offset,
        telemetry=telemetry,
        validator_version=e.validator_version,
        policy_version=e.policy_version,
    )
    out: list[Outgoing] = [("alerts", key.encode(), alert.model_dump_json().encode())]
    if opened:
        incident = IncidentRecord(
            incident_id=key,
            kind="breaker_trip",
            title=title,
            detail=detail,
            seq=e.seq,
            telemetry=telemetry,
            validator_version=e.validator_version,
            policy_version=e.policy_version,
        )
        out.append(("incidents", key.encode(), incident.model_dump_json().encode()))
    return out


def spike_record(tick: int, count: int, threshold: int, validator_version: str, policy_version: int) -> Outgoing:
    """One alert per grid tick whose rejections passed the policy's spike threshold."""
    key = f"spike:{tick}"
    alert = AlertRecord(
        alert_id=key,
        kind="rejection_spike",
        severity="critical",
        title=f"Rejection spike at tick {tick}: {count} rejections",
        detail=f"{count} proposals rejected within grid tick {tick}; the policy threshold is {threshold} per tick",
        telemetry={"tick": tick, "rejections": count, "threshold": threshold},
        validator_version=validator_version,
        policy_version=policy_version,
    )
    return "alerts", key.encode(), alert.model_dump_json().encode()
