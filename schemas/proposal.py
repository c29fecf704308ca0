"""The proposal envelope (TradeJSON) and every proposal kind.

A producer sends one JSON object per Kafka message on ``{prefix}.proposals``. The envelope names
the agent, its nonce, the tick the agent saw, the tick after which the proposal is void, and a
``body`` whose ``kind`` selects the rule that decides it. ``sig`` signs the canonical encoding of
everything else (see ``schemas.codec`` and ``schemas.signing``). Models are strict and forbid
unknown fields, so a typo is a ``MALFORMED`` rejection that names the field, never a silently
ignored value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import (
    ACCOUNTS_PER_AGENT_COUNT_MAX,
    PARTICIPANTS_COUNT_MAX,
    QUANTITY_MAX,
    RATIONALE_LENGTH_MAX,
    READINGS_COUNT_MAX,
    AccountId,
    AgentId,
    Hex32,
    Hex64,
    Memo,
    Nonce,
    OfferId,
    PolicyParamName,
    Price,
    ProposalId,
    Quantity,
    Resource,
    Seq,
    Signature,
    Tick,
    text,
)

ENVELOPE_VERSION = 1


# Lists stop at their first bad item (``fail_fast``): the first error is all a rejection reports, and a
# hostile genesis of 234 participants with 60 unknown keys each would otherwise cost 30 ms of errors.


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- trade kinds ---------------------------------------------------------------------------------


class Transfer(Strict):
    """Pay ``quantity`` of ``resource`` from an account the agent owns to any known account."""

    kind: Literal["transfer"]
    from_account: AccountId
    to_account: AccountId
    resource: Resource
    quantity: Quantity
    memo: Memo = ""


class Offer(Strict):
    """Sell ``quantity`` of ``resource`` from ``account`` for ``price`` credits in total; to anyone, or
    (``to_agent``) to one counterparty only, who may accept, reject or counter (alternating offers)."""

    kind: Literal["offer"]
    account: AccountId
    resource: Resource
    quantity: Quantity
    price: Price
    open_until_tick: Tick
    to_agent: AgentId | None = None


class Accept(Strict):
    """Take an open offer whole: resource to ``account``, price from ``account``, atomically."""

    kind: Literal["accept"]
    offer_id: OfferId
    account: AccountId


class Counter(Strict):
    """Answer an addressed offer, on one's turn, with other terms: the other party's turn next. The buyer
    names the ``account`` it would receive into and pay from; the seller its offer's account."""

    kind: Literal["counter"]
    offer_id: OfferId
    account: AccountId
    quantity: Quantity
    price: Price


class Reject(Strict):
    """End a negotiation (an addressed offer), as either of its two parties."""

    kind: Literal["reject"]
    offer_id: OfferId


class Bid(Strict):
    """Buy up to ``quantity`` of ``resource`` into ``account`` at ``price`` millicredits per 1,000 units
    or less. It fills at once against resting asks at or below it (best price first, then the earliest),
    in as many partial fills as it takes; the rest rests in the book until ``open_until_tick``, its
    credits held in escrow. A policy (``market_mechanism``) may collect it for the tick's clearing instead.
    """

    kind: Literal["bid"]
    account: AccountId
    resource: Resource
    quantity: Quantity
    price: Price
    open_until_tick: Tick


class Ask(Strict):
    """Sell up to ``quantity`` of ``resource`` from ``account`` at ``price`` millicredits per 1,000 units
    or more; the mirror of ``Bid``, the resource held in escrow while it rests."""

    kind: Literal["ask"]
    account: AccountId
    resource: Resource
    quantity: Quantity
    price: Price
    open_until_tick: Tick


class Cancel(Strict):
    """Withdraw one's own open offer or resting order (its escrow comes back)."""

    kind: Literal["cancel"]
    offer_id: OfferId


class Reading(Strict):
    account: AccountId
    resource: Resource
    produced: Annotated[int, Field(strict=True, ge=0, le=QUANTITY_MAX)] = 0
    consumed: Annotated[int, Field(strict=True, ge=0, le=QUANTITY_MAX)] = 0


class Meter(Strict):
    """The grid operator's readings for one tick; the only kind that advances the grid clock."""

    kind: Literal["meter"]
    readings: Annotated[list[Reading], Field(max_length=READINGS_COUNT_MAX, fail_fast=True)]


# --- registry and governance kinds ----------------------------------------------------------------


# Participants trade, the meter reads the grid (the only kind that advances its clock), operators are
# people who govern. The first two sign with HMAC keys the validator derives, operators with Ed25519.
Role = Literal["participant", "meter", "operator"]
HMAC_ROLES = frozenset({"participant", "meter"})


class Participant(Strict):
    agent: AgentId
    role: Role = "participant"
    # Participants and the meter: SHA-256 of the HMAC key, first 16 bytes in hex (the ledger names the
    # key, never holds it). Operators: the Ed25519 public key. The law refuses any other combination.
    key_fingerprint: Hex32 | None = None
    public_key: Hex64 | None = None
    accounts: Annotated[list[AccountId], Field(min_length=1, max_length=ACCOUNTS_PER_AGENT_COUNT_MAX, fail_fast=True)]
    kind: Annotated[str, text(40)] = "generic"
    emits_carbon: bool = False
    critical_load: bool = False


class Opening(Strict):
    account: AccountId
    resource: Resource
    quantity: Quantity


class Genesis(Strict):
    """First entry of every ledger: the registry and the opening balances, minted from system:genesis."""

    kind: Literal["genesis"]
    participants: Annotated[list[Participant], Field(min_length=1, max_length=PARTICIPANTS_COUNT_MAX, fail_fast=True)]
    balances: Annotated[list[Opening], Field(max_length=PARTICIPANTS_COUNT_MAX * 3, fail_fast=True)]
    policy: dict[PolicyParamName, int] = Field(default_factory=dict)


class PolicySet(Strict):
    kind: Literal["policy_set"]
    params: Annotated[dict[PolicyParamName, int], Field(min_length=1, max_length=32)]
    reason: Memo = ""
    # The policy version the operator saw: when given and no longer current, the command is
    # STALE_COMMAND instead of overwriting a change it was not signed against.
    expected_policy_version: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)] | None = None


class BreakerTrip(Strict):
    kind: Literal["breaker_trip"]
    reason: Annotated[str, text(280, length_min=1)]


class BreakerResume(Strict):
    kind: Literal["breaker_resume"]
    reason: Annotated[str, text(280, length_min=1)]
    # The ledger seq of the entry that opened the breaker this command resumes: an old or delayed
    # resume can never close a later trip (STALE_COMMAND).
    trip_seq: Seq


class ParticipantAdd(Strict):
    kind: Literal["participant_add"]
    participant: Participant


class ParticipantRekey(Strict):
    """Rotate an agent's key from the next entry on: a participant's or the meter's to the next
    generation's HMAC key (named by its fingerprint), an operator's to a new public key."""

    kind: Literal["participant_rekey"]
    agent: AgentId
    key_fingerprint: Hex32 | None = None
    public_key: Hex64 | None = None
    reason: Memo = ""


class ParticipantSuspend(Strict):
    kind: Literal["participant_suspend"]
    agent: AgentId
    reason: Memo = ""


Body = Annotated[
    Transfer
    | Offer
    | Accept
    | Counter
    | Reject
    | Bid
    | Ask
    | Cancel
    | Meter
    | Genesis
    | PolicySet
    | BreakerTrip
    | BreakerResume
    | ParticipantAdd
    | ParticipantRekey
    | ParticipantSuspend,
    Field(discriminator="kind"),
]

TRADE_KINDS = frozenset({"transfer", "offer", "accept", "counter", "reject", "bid", "ask", "cancel"})
GOVERNANCE_KINDS = frozenset(
    {"policy_set", "breaker_trip", "breaker_resume", "participant_add", "participant_rekey", "participant_suspend"}
)


class Provenance(Strict):
    """Who or what produced the intent. Integers only: token counts and latency are whole numbers."""

    source: Literal["heuristic", "gemini", "adversarial", "cli", "meter", "operator", "bench"]
    model: Annotated[str, text(80)] | None = None
    prompt_sha256: Hex64 | None = None
    response_id: Annotated[str, text(128)] | None = None
    prompt_tokens: Annotated[int, Field(strict=True, ge=0, le=10**9)] | None = None
    output_tokens: Annotated[int, Field(strict=True, ge=0, le=10**9)] | None = None
    latency_ms: Annotated[int, Field(strict=True, ge=0, le=10**9)] | None = None
    rationale: Annotated[str, text(RATIONALE_LENGTH_MAX)] | None = None
    fallback: Annotated[str, text(120)] | None = None


class Proposal(Strict):
    """The envelope. ``tick`` is the grid tick the agent saw; void after ``expires_tick``.

    ``(agent, nonce)`` is the proposal's identity: the nonce must be above the last one decided for the
    agent, accepted or rejected, so a decided proposal is never decided again and the validator
    remembers one number per agent. ``id`` is the producer's own label for tracing (not unique).
    """

    v: Literal[1]
    id: ProposalId
    agent: AgentId
    nonce: Nonce
    tick: Tick
    expires_tick: Tick
    body: Body
    provenance: Provenance | None = None
    sig: Signature
