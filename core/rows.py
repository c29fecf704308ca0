"""The rows the ledger is stored as, defined once: an entry (``law.ledger.Entry``) and a rejection.

Column names and Postgres types are derived from the classes here, so the validator's COPY, the
relay's catch-up, the audit's reader, the binary COPY of ``rehydrate`` and the dashboard all read and
write the same layout. A field added to ``Entry`` or ``Rejection`` fails the asserts below until its
column type is stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec

from law.ledger import Entry

Postings = tuple[tuple[str, str, int], ...]

# Entry's stored columns (postings live in their own table) and their Postgres types, in table order.
LEDGER_COLUMN_TYPES: dict[str, str] = {
    "seq": "int8",
    "source_offset": "int8",
    "proposal_id": "text",
    "kind": "text",
    "agent": "text",
    "nonce": "int8",
    "tick": "int8",
    "expires_tick": "int8",
    "validator_version": "text",
    "policy_version": "int4",
    "effects_json": "text",
    "proposal_json": "text",
    "sig": "text",
    "prev_hash": "bytea",
    "hash": "bytea",
}
_ENTRY_FIELDS = Entry.__struct_fields__
assert set(_ENTRY_FIELDS) == {*LEDGER_COLUMN_TYPES, "postings"}, "core/rows.py must name every Entry field"
LEDGER_COLUMN_NAMES: tuple[str, ...] = tuple(LEDGER_COLUMN_TYPES)
LEDGER_COLUMNS = ", ".join(LEDGER_COLUMN_NAMES)
LEDGER_TYPES: tuple[str, ...] = tuple(LEDGER_COLUMN_TYPES.values())
POSTING_COLUMN_TYPES: dict[str, str] = {
    "seq": "int8",
    "idx": "int2",
    "account": "text",
    "resource": "text",
    "amount": "int8",
}
POSTING_COLUMNS = ", ".join(POSTING_COLUMN_TYPES)
POSTING_TYPES: tuple[str, ...] = tuple(POSTING_COLUMN_TYPES.values())


_ledger_values = attrgetter(*LEDGER_COLUMN_NAMES)  # one C call for all of them: this runs per entry


def entry_row(e: Entry) -> tuple[Any, ...]:
    """The values of ``LEDGER_COLUMNS`` for ``e``, in that order."""
    values: tuple[Any, ...] = _ledger_values(e)
    return values


# Entry's fields are the columns with postings after policy_version: entry_from_row relies on it
# (positional construction; it runs per entry when folding).
assert (*LEDGER_COLUMN_NAMES[:10], "postings", *LEDGER_COLUMN_NAMES[10:]) == _ENTRY_FIELDS


def entry_from_row(row: tuple[Any, ...] | list[Any], postings: Postings) -> Entry:
    """The entry a row of ``LEDGER_COLUMNS`` (in that order) describes, with its postings."""
    seq, offset, proposal_id, kind, agent, nonce, tick, expires_tick, version, policy_version = row[:10]
    return Entry(
        seq, offset, proposal_id, kind, agent, nonce, tick, expires_tick, version, policy_version,
        postings, row[10], row[11], row[12], bytes(row[13]), bytes(row[14]),
    )  # fmt: skip


def posting_rows(e: Entry) -> list[tuple[int, int, str, str, int]]:
    return [(e.seq, idx, account, resource, amount) for idx, (account, resource, amount) in enumerate(e.postings)]


DUPLICATE_REASON = "DUPLICATE_PROPOSAL"  # refused after the signature verified, without a nonce to use up


def was_authenticated(nonce: int | None, reason_code: str) -> bool:
    """Whether a rejection's signature verified before the refusal: the refusal then used up the
    nonce, or the nonce had been used already (a replay of signed bytes). Otherwise its agent, kind
    and provenance are only what an unknown sender claimed."""
    return nonce is not None or reason_code == DUPLICATE_REASON


class Rejection(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A decided offset that did not become an entry, with the precise reason. Table ``rejections``.
    A Struct like ``Entry`` (``law.ledger.Entry`` says why)."""

    source_offset: int
    proposal_id: str | None
    agent: str | None
    kind: str | None
    reason_code: str
    field: str | None
    detail: str
    tick: int | None
    validator_version: str
    policy_version: int
    provenance_json: str | None
    # The agent's nonce this refusal used up (``law.state.consume``); None when the message was not
    # authenticated, which uses up nothing.
    nonce: int | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = _rejection_values(self)
        return values

    @property
    def authenticated(self) -> bool:
        return was_authenticated(self.nonce, self.reason_code)


REJECTION_COLUMN_TYPES: dict[str, str] = {
    "source_offset": "int8",
    "proposal_id": "text",
    "agent": "text",
    "kind": "text",
    "reason_code": "text",
    "field": "text",
    "detail": "text",
    "tick": "int8",
    "validator_version": "text",
    "policy_version": "int4",
    "provenance_json": "text",
    "nonce": "int8",
}
REJECTION_COLUMN_NAMES: tuple[str, ...] = Rejection.__struct_fields__
assert tuple(REJECTION_COLUMN_TYPES) == REJECTION_COLUMN_NAMES, "core/rows.py must name every Rejection field"
REJECTION_TYPES: tuple[str, ...] = tuple(REJECTION_COLUMN_TYPES.values())
REJECTION_COLUMNS = ", ".join(REJECTION_COLUMN_NAMES)
_rejection_values = attrgetter(*REJECTION_COLUMN_NAMES)


@dataclass(frozen=True, slots=True)
class ConsumedNonce:
    """A refusal that used up an agent's nonce: the one fact a rejection adds to the law's state."""

    source_offset: int
    agent: str
    nonce: int


@dataclass
class Batch:
    """What one transaction writes: the decided offsets below ``next_offset`` as entries or rejections."""

    entries: list[Entry] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    next_offset: int = 0

    @property
    def decided_count(self) -> int:
        return len(self.entries) + len(self.rejections)


@dataclass
class Position:
    """Where a ledger stands: the next offset to decide and the chain's head."""

    next_offset: int
    head_seq: int  # -1 when the ledger is empty
    head_hash: bytes


class CommitRefused(RuntimeError):
    """The store refused a batch the law accepted: a bug in the law, never a verdict. The validator
    halts on it with this diagnosis instead of retrying the same batch forever."""

    def __init__(
        self,
        first_offset: int,
        next_offset: int,
        constraint: str,
        detail: str,
        suspects: list[tuple[int, str, int, str]],
    ) -> None:
        self.first_offset, self.next_offset = first_offset, next_offset
        self.constraint, self.detail = constraint, detail
        self.suspects = suspects  # (offset, agent, nonce, proposal id) of the entries it names
        super().__init__(
            f"the store refused offsets [{first_offset}, {next_offset}): {constraint}: {detail}; entries {suspects}"
        )
