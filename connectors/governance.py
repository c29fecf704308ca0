"""Signed governance commands: the only way humans change policy, the breaker or the registry.

The CLI and the dashboard's console both call ``send``; neither ever writes the database. A command
is an ordinary proposal on the ordered proposals topic, signed with an operator's key, so replay
reproduces exactly when each rule applied.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg

from connectors.kafka_io import send_proposals
from connectors.read_model import current_tick
from core.config import Settings
from core.key_secret import key_secret
from schemas.codec import encode
from schemas.envelope import build

GOVERNANCE_TTL_TICKS = 10


def send(settings: Settings, body: dict[str, Any], operator: str | None = None, source: str = "operator") -> str:
    """Sign ``body`` as the operator, publish it, wait for the broker's ack; return the proposal id."""
    pid = f"gov-{uuid.uuid4()}"
    tick = current_tick(settings.database_url)
    proposal = build(
        operator or settings.operator, body, tick, GOVERNANCE_TTL_TICKS, key_secret(settings), pid, {"source": source}
    )
    send_proposals(settings, [encode(proposal)])
    return pid


def policy_set(params: dict[str, int], reason: str = "") -> dict[str, Any]:
    return {"kind": "policy_set", "params": params, "reason": reason}


def breaker(action: str, reason: str) -> dict[str, Any]:
    assert action in ("trip", "resume"), action
    return {"kind": f"breaker_{action}", "reason": reason}


DECISION_WAIT_S = 30.0
DECISION_POLL_S = 0.2


def wait_for_decision(database_url: str, proposal_id: str, timeout_s: float = DECISION_WAIT_S) -> str:
    """Poll the ledger and rejections until the validator decided ``proposal_id``; a one-line outcome."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            entry = conn.execute(
                "SELECT seq, policy_version FROM ledger WHERE proposal_id = %s", (proposal_id,)
            ).fetchone()
            if entry is not None:
                return f"accepted as ledger seq {entry[0]}"
            rejection = conn.execute(
                "SELECT reason_code, detail FROM rejections WHERE proposal_id = %s ORDER BY source_offset DESC LIMIT 1",
                (proposal_id,),
            ).fetchone()
            if rejection is not None:
                return f"rejected {rejection[0]}: {rejection[1]}"
            time.sleep(DECISION_POLL_S)
    return f"not decided within {timeout_s:.0f} s (is the validator running?)"


def send_and_report(settings: Settings, body: dict[str, Any], wait: bool) -> int:
    """For the CLI: ``send`` the command, print its proposal id and, if ``wait``, the validator's decision."""
    pid = send(settings, body)
    print(f"sent {pid}")
    if wait:
        print(wait_for_decision(settings.database_url, pid))
    return 0
