"""Sample records as the validator publishes them, for sink tests."""

from __future__ import annotations

from schemas.proposal import Provenance
from schemas.records import RejectionRecord


def sample_rejection(
    offset: int,
    reason: str = "INSUFFICIENT_BALANCE",
    agent: str | None = "agent-a",
    kind: str | None = "transfer",
    rationale: str = "cheap now",
    tick: int = 3,
) -> RejectionRecord:
    return RejectionRecord(
        rejection_id=f"rej:{offset}",
        source_offset=offset,
        proposal_id=f"p-{offset}",
        agent=agent,
        kind=kind,
        reason_code=reason,  # type: ignore[arg-type]  # tests pass valid codes as plain strings
        field="body.quantity",
        detail=f"needs {offset} kWh, has 3",
        tick=tick,
        validator_version="law-1.4.0",
        policy_version=7,
        provenance=Provenance(source="gemini", model="gemini-2.5-flash", rationale=rationale),
    )
