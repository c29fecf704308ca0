"""Signed governance commands: the only way humans change policy, the breaker or the registry.

The CLI and the dashboard's console both call ``send``; neither ever writes the database. A command
is an ordinary proposal on the ordered proposals topic, signed with one operator's own Ed25519 key
(the CLI's from ``GRID_HOME/operators``, each console user's unlocked by their password), so the
ledger names the person behind every command and replay reproduces exactly when each rule applied.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from connectors.kafka_io import send_proposals
from connectors.readmodel.ledger import decision_of, producer_position
from core.config import Settings
from core.process import WaitTimeoutError, poll_until
from schemas.codec import encode
from schemas.envelope import Nonces, build
from schemas.signing import Ed25519Signer

GOVERNANCE_TTL_TICKS = 10
# This process's nonces per operator: a long-lived sender (the console) may send again before the
# validator decided its last command, so the ledger alone would hand out the same nonce twice.
_NONCES: dict[str, Nonces] = {}


def send(
    settings: Settings,
    body: dict[str, Any],
    operator: str,
    signer: Ed25519Signer,
    source: str = "operator",
    ledger_url: str | None = None,
) -> str:
    """Sign ``body`` as ``operator`` with their key, publish it, wait for the broker's ack; return the
    proposal id. The tick and nonce are read from the ledger at ``ledger_url`` (default: the owner's
    URL; the console passes its read-only one)."""
    pid = f"gov-{uuid.uuid4()}"
    tick, decided = producer_position(ledger_url or settings.database_url, operator)
    nonce = _NONCES.setdefault(operator, Nonces()).next(decided)
    proposal = build(operator, body, tick, GOVERNANCE_TTL_TICKS, signer, pid, nonce, {"source": source})
    send_proposals(settings, [encode(proposal)])
    return pid


def policy_set(params: dict[str, int], reason: str = "") -> dict[str, Any]:
    return {"kind": "policy_set", "params": params, "reason": reason}


def breaker(action: str, reason: str, trip_seq: int | None = None) -> dict[str, Any]:
    """A trip, or a resume of the trip opened by ledger entry ``trip_seq`` (grid_status names it)."""
    assert action in ("trip", "resume"), action
    if action == "trip":
        return {"kind": "breaker_trip", "reason": reason}
    assert trip_seq is not None, "a resume names the trip it closes"
    return {"kind": "breaker_resume", "reason": reason, "trip_seq": trip_seq}


DECISION_WAIT_S = 30.0
POLL_INTERVAL_S = 0.2


def wait_for_decision(database_url: str, proposal_id: str, timeout_s: float = DECISION_WAIT_S) -> str:
    """Poll the ledger and rejections until the validator decided ``proposal_id``; a one-line outcome."""
    outcome: str | None = None
    with psycopg.connect(database_url, autocommit=True) as conn:

        def decided() -> bool:
            nonlocal outcome
            outcome = decision_of(conn, proposal_id)
            return outcome is not None

        try:
            poll_until(decided, timeout_s, f"the decision on {proposal_id}", interval_s=POLL_INTERVAL_S)
        except WaitTimeoutError:
            return f"not decided within {timeout_s:.0f} s (is the validator running?)"
    assert outcome is not None, "poll_until returned, so the last check found the decision"
    return outcome


def send_and_report(settings: Settings, body: dict[str, Any], wait: bool, signer: Ed25519Signer) -> int:
    """For the CLI: ``send`` the command as ``GRID_OPERATOR`` with that operator's ``signer``, print its
    proposal id and, if ``wait``, the validator's decision."""
    pid = send(settings, body, settings.operator, signer)
    print(f"sent {pid}")
    if wait:
        print(wait_for_decision(settings.database_url, pid))
    return 0
