"""Records the validator publishes: rejections, ledger events, alerts and incidents.

Each has a stable id derived from the log (source offset or ledger seq), which is also its Kafka key,
so a consumer that sees a record twice (the relay is at-least-once) can drop the repeat.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.proposal import Provenance
from schemas.types import Amount


class Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


ReasonCode = Literal[
    "MALFORMED",
    "BAD_SIGNATURE",
    "UNKNOWN_AGENT",
    "UNKNOWN_ACCOUNT",
    "NOT_OWNER",
    "INSUFFICIENT_BALANCE",
    "DUPLICATE_PROPOSAL",
    "EXPIRED",
    "OFFER_NOT_OPEN",
    "NOT_ADDRESSED",
    "SELF_TRADE",
    "LIMIT_EXCEEDED",
    "GENESIS_REQUIRED",
    "UNAUTHORIZED",
    "SUSPENDED",
    "POLICY_CAP",
    "PRICE_CEILING",
    "RATE_LIMITED",
    "CIRCUIT_OPEN",
    "BAD_POLICY",
    "BREAKER_STATE",
    "STALE_COMMAND",
    "DUPLICATE_OFFER",
    "UNKNOWN_KEY",
]


class RejectionRecord(Record):
    """Topic ``{prefix}.rejections``; key ``rej:{source_offset}``."""

    v: Literal[1] = 1
    rejection_id: str
    source_offset: int
    proposal_id: str | None
    agent: str | None
    kind: str | None
    reason_code: ReasonCode
    field: str | None
    detail: str
    tick: int | None
    validator_version: str
    policy_version: int
    provenance: Provenance | None = None
    nonce: int | None = None  # the agent's nonce this refusal used up; None when unauthenticated


Posting = tuple[str, str, Amount]  # (account, resource, signed amount)


class LedgerEvent(Record):
    """Topic ``{prefix}.ledger-events``; key ``entry:{seq}``. One per ledger entry, in seq order."""

    v: Literal[1] = 1
    seq: int
    source_offset: int
    proposal_id: str
    kind: str
    agent: str
    nonce: int
    tick: int
    validator_version: str
    policy_version: int
    postings: list[Posting]
    effects: list[dict[str, Any]]
    prev_hash: str
    hash: str
    provenance: Provenance | None = None


Severity = Literal["info", "warning", "critical"]
AlertKind = Literal["breaker_trip", "breaker_resume", "rejection_spike", "replay_anomaly", "sink_failure"]


class AlertRecord(Record):
    """Topic ``{prefix}.alerts``; key ``alert_id``. Critical events for the Discord sink."""

    v: Literal[1] = 1
    alert_id: str
    kind: AlertKind
    severity: Severity
    title: Annotated[str, Field(max_length=256)]
    detail: Annotated[str, Field(max_length=4000)]
    seq: int | None = None
    source_offset: int | None = None
    telemetry: dict[str, int] = Field(default_factory=dict)
    validator_version: str
    policy_version: int


class IncidentRecord(Record):
    """Topic ``{prefix}.incidents``; key ``incident_id``. Opens an urgent Linear issue."""

    v: Literal[1] = 1
    incident_id: str
    kind: Literal["breaker_trip", "replay_anomaly"]
    title: Annotated[str, Field(max_length=256)]
    detail: Annotated[str, Field(max_length=4000)]
    seq: int | None = None
    telemetry: dict[str, int] = Field(default_factory=dict)
    validator_version: str
    policy_version: int
