"""The one audit of a stored ledger: per-entry checks, the fold with checks, the checkpoint choice and
the comparison of the validator's caches with the fold.

``verify``, ``rehydrate``, the validator's start-up and the dashboard all fold through ``CheckedFold``
and read through a ``LedgerReader`` (``connectors.readmodel.ledger.PgLedgerReader`` for Postgres), so a
check added here is made everywhere. An entry that fails a check is reported with its seq and is not
applied, and the chain continues from what is stored, so one tampered row is one finding, not a
cascade.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from core.rows import ConsumedNonce
from law import Accepted, Rejected, State, apply, decide
from law.decide import Keys
from law.ledger import (
    GENESIS_PREV_HASH,
    Entry,
    all_resources_balance,
    as_accepted,
    canonical,
    effects_json,
    recompute_hash,
)
from law.snapshot import SnapshotError, from_json
from law.state import consume, inconsistency
from schemas.codec import Decoded, DecodeError, decode, encode
from schemas.signing import ed25519_valid

Decided = Entry | ConsumedNonce  # what the law's state is folded from, in offset order

PROBLEMS_REPORTED_MAX = 1_000
CHECKPOINT_SEQ_ANY = 2**62


class LedgerCorrupt(RuntimeError):
    """The stored ledger cannot be folded: deciding on top of it would extend the damage."""


# --- checkpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The law's state after entry ``seq`` and every decision below ``next_offset`` (refusals use up
    nonces, so they change the state too). hash = sha256(ledger_hash || next_offset as 8 bytes ||
    state_json), where ledger_hash is the hash of entry ``seq``; ``signature`` is the validator's
    Ed25519 signature of that hash, so a writer who edits the state and recomputes the hash still
    fails, and start-up trusts only what the validator itself wrote."""

    seq: int
    ledger_hash: bytes
    next_offset: int
    state_json: str
    hash: bytes
    signature: bytes | None


def checkpoint_hash(ledger_hash: bytes, next_offset: int, state_json: str) -> bytes:
    return hashlib.sha256(ledger_hash + next_offset.to_bytes(8, "big") + state_json.encode()).digest()


def checkpoint_problem(
    checkpoint: Checkpoint, ledger_hash_at_seq: bytes | None, validator_key: str
) -> tuple[str, str] | None:
    """(reason, detail) if the checkpoint cannot be trusted as the state after its entry, else None."""
    if ledger_hash_at_seq is None:
        return "CHECKPOINT_CORRUPT", f"no ledger entry {checkpoint.seq} to link to"
    if checkpoint.ledger_hash != ledger_hash_at_seq:
        return "CHECKPOINT_CORRUPT", "ledger_hash is not the hash of its ledger entry"
    if checkpoint_hash(checkpoint.ledger_hash, checkpoint.next_offset, checkpoint.state_json) != checkpoint.hash:
        return "CHECKPOINT_CORRUPT", "hash does not match sha256(ledger_hash || next_offset || state_json)"
    if checkpoint.signature is None or not ed25519_valid(checkpoint.hash, checkpoint.signature, validator_key):
        return "CHECKPOINT_FORGED", "its hash is not signed by the validator's key"
    try:
        state = from_json(checkpoint.state_json)
    except SnapshotError as exc:
        return "CHECKPOINT_CORRUPT", str(exc)
    if state.seq_next != checkpoint.seq + 1:
        return "CHECKPOINT_CORRUPT", f"snapshot is at seq_next {state.seq_next}, not {checkpoint.seq + 1}"
    return None


@dataclass
class Start:
    """Where a fold begins: T=0, or the state of a checkpoint that verified."""

    state: State = field(default_factory=State)
    prev_hash: bytes = GENESIS_PREV_HASH
    last_offset: int = -1  # the offset of the last entry folded into ``state``
    next_offset: int = 0  # every decision below it is in ``state``
    checkpoint_seq: int | None = None  # None: from T=0


EntryLink = tuple[bytes, int]  # (hash, source_offset) of a stored entry


def choose_start(
    newest_first: Iterable[Checkpoint],
    link: Callable[[int], EntryLink | None],
    skipped: Callable[[Checkpoint, str, str], None],
    validator_key: str,
) -> Start:
    """The newest checkpoint the validator (public key ``validator_key``) signed that links to its
    entry and verifies; each one that does not is passed to ``skipped`` with its reason. T=0 when
    none verifies."""
    for checkpoint in newest_first:
        linked = link(checkpoint.seq)
        problem = checkpoint_problem(checkpoint, linked[0] if linked else None, validator_key)
        if problem is None and linked is not None:
            state = from_json(checkpoint.state_json)
            return Start(state, checkpoint.ledger_hash, linked[1], checkpoint.next_offset, checkpoint.seq)
        if problem is not None:
            skipped(checkpoint, *problem)
    return Start()


# --- entries -------------------------------------------------------------------------------------


def entry_problems(entry: Entry, expected_seq: int, prev_hash: bytes, last_offset: int) -> list[tuple[str, str]]:
    """Everything wrong with one stored entry given what came before it: (reason, detail) pairs."""
    found = []
    if entry.seq != expected_seq:
        found.append(("SEQ_GAP", f"expected seq {expected_seq}, found {entry.seq}"))
    if entry.prev_hash != prev_hash:
        found.append(
            ("CHAIN_BROKEN", f"prev_hash {entry.prev_hash.hex()[:16]}… != previous hash {prev_hash.hex()[:16]}…")
        )
    try:
        if recompute_hash(entry) != entry.hash:
            found.append(("HASH_MISMATCH", "stored hash does not match the entry's content"))
    except (orjson.JSONDecodeError, TypeError):
        found.append(("HASH_MISMATCH", "effects_json is not JSON: the row was edited"))
    if entry.source_offset <= last_offset:
        found.append(("OFFSET_ORDER", f"offset {entry.source_offset} not after {last_offset}"))
    if not all_resources_balance(entry.postings):
        found.append(("NOT_CONSERVED", "postings do not sum to zero per resource"))
    return found


class CheckedFold:
    """Folds stored entries in seq order into a state, checking each one first.

    ``add`` returns the entry's problems; the entry is applied only when there are none. The fast
    path decodes an entry's effects once for both its hash check and its fold (this runs per entry at
    rehydrate speed); only a failing entry pays for the detailed diagnosis.
    """

    def __init__(self, start: Start) -> None:
        self.start = start
        self.state = start.state
        self.expected_seq = start.state.seq_next
        self.prev_hash = start.prev_hash
        self.last_offset = start.last_offset
        self.head_seq = start.checkpoint_seq if start.checkpoint_seq is not None else -1
        self.head_hash = start.prev_hash
        self.entries = 0

    def add(self, entry: Entry) -> list[tuple[str, str]]:
        accepted = self._verified(entry)
        if accepted is None:
            found = entry_problems(entry, self.expected_seq, self.prev_hash, self.last_offset)
        elif (conflict := inconsistency(self.state, accepted)) is not None:
            found = [("FOLD_INCONSISTENT", f"cannot follow the entries before it: {conflict}")]
        else:
            apply(self.state, accepted)
            found = []
        # Continue the chain from what is stored, so one bad row yields one report, not a cascade.
        self.expected_seq, self.prev_hash, self.last_offset = entry.seq + 1, entry.hash, entry.source_offset
        self.head_seq, self.head_hash = entry.seq, entry.hash
        self.entries += 1
        return found

    def consume(self, c: ConsumedNonce) -> None:
        """A refusal that used up a nonce: the one thing a rejection adds to the state."""
        consume(self.state, c.agent, c.nonce)

    def _verified(self, e: Entry) -> Accepted | None:
        """The entry's decision if its seq, chain, offset, conservation and hash check out, else None."""
        if e.seq != self.expected_seq or e.prev_hash != self.prev_hash or e.source_offset <= self.last_offset:
            return None
        if not all_resources_balance(e.postings):
            return None
        try:
            effects = tuple(orjson.loads(e.effects_json))
        except orjson.JSONDecodeError:
            return None
        accepted = Accepted(
            e.proposal_id, e.agent, e.nonce, e.kind, e.tick, e.expires_tick, e.postings, effects, e.policy_version
        )
        body = canonical(e.seq, e.source_offset, accepted, e.validator_version, e.effects_json, e.proposal_json, e.sig)
        return accepted if hashlib.sha256(e.prev_hash + body).digest() == e.hash else None


class RedecidingFold(CheckedFold):
    """A fold from T=0 that re-decides every stored entry with the law and folds the law's decision.

    The chain checks still run on what is stored; a stored entry the law would not have written
    (a bad signature with the key of its time, other postings or effects) is ``DECISION_MISMATCH``.
    The state continues from the law's decision, so one rewritten row is one finding."""

    def __init__(self, keys: Keys) -> None:
        super().__init__(Start())
        self.keys = keys

    def add(self, entry: Entry) -> list[tuple[str, str]]:
        found = entry_problems(entry, self.expected_seq, self.prev_hash, self.last_offset)
        mismatch = self._redecide(entry)
        if mismatch is not None:
            found.append(("DECISION_MISMATCH", mismatch))
        self.expected_seq, self.prev_hash, self.last_offset = entry.seq + 1, entry.hash, entry.source_offset
        self.head_seq, self.head_hash = entry.seq, entry.hash
        self.entries += 1
        return found

    def _apply_stored(self, entry: Entry) -> None:
        """Fold what is stored when the law refuses it, if it can follow: later entries are then judged
        against the ledger's own history, so one forged entry is one finding, not a cascade."""
        accepted = as_accepted(entry)
        if inconsistency(self.state, accepted) is None:
            apply(self.state, accepted)

    def _redecide(self, entry: Entry) -> str | None:
        """Why the law would not have written ``entry`` (None when it would); applies the law's decision."""
        decoded = _stored_proposal(entry)
        if isinstance(decoded, str):
            self._apply_stored(entry)
            return decoded
        decision = decide(self.state, decoded, entry.source_offset, self.keys)
        if isinstance(decision, Rejected):
            self._apply_stored(entry)
            return f"the law refuses the stored proposal: {decision.reason_code} ({decision.detail})"
        apply(self.state, decision)
        if _recorded(entry) != (*_identity(decision), decision.postings, effects_json(decision)):
            return f"the entry is not what the law decides on its proposal (stamped {entry.validator_version})"
        return None


def _identity(d: Entry | Accepted) -> tuple[str, str, int, str, int, int, int]:
    return (d.proposal_id, d.agent, d.nonce, d.kind, d.tick, d.expires_tick, d.policy_version)


def _recorded(e: Entry) -> tuple[Any, ...]:
    return (*_identity(e), e.postings, e.effects_json)


def _stored_proposal(entry: Entry) -> Decoded | str:
    """The proposal an entry stores, decoded as the validator decoded it; a string says why it is not one."""
    try:
        unsigned = orjson.loads(entry.proposal_json)
        raw = encode({**unsigned, "sig": entry.sig}) if isinstance(unsigned, dict) else b""
    except orjson.JSONDecodeError:
        return "proposal_json is not JSON"
    decoded = decode(raw)
    if isinstance(decoded, DecodeError):
        return f"the stored proposal does not decode: {decoded.reason_code} at {decoded.field}"
    if decoded.signed_bytes.decode() != entry.proposal_json:
        return "proposal_json is not the canonical encoding of a proposal"
    return decoded


# --- the caches ----------------------------------------------------------------------------------


@dataclass
class Caches:
    """What the validator cached, read in one snapshot together with the ledger head it belongs to."""

    head_seq: int
    head_hash: bytes
    balances: dict[tuple[str, str], int]
    offers: dict[str, tuple[Any, ...]]
    orders: dict[str, tuple[Any, ...]]
    participants: dict[str, tuple[Any, ...]]
    status: dict[str, Any] | None  # the grid_status row, JSON columns decoded; None before genesis


@dataclass(frozen=True, slots=True)
class Difference:
    where: str  # "world_state energy@agent001:main", "open_offers p-12", "grid_status tick"
    cached: str
    rebuilt: str


STATUS_KEYS = (
    "head_seq", "head_hash", "tick", "policy_version", "policy",
    "breaker_open", "breaker_reason", "breaker_trip_seq", "telemetry", "shortfall",
)  # fmt: skip


def rebuilt_status(state: State, head_seq: int, head_hash: bytes) -> dict[str, Any]:
    """The grid_status row the validator should have written after ``head_seq``."""
    return {
        "head_seq": head_seq,
        "head_hash": head_hash.hex(),
        "tick": state.tick,
        "policy_version": state.policy_version,
        "policy": dict(state.policy),
        "breaker_open": state.breaker_open,
        "breaker_reason": state.breaker_reason,
        "breaker_trip_seq": state.breaker_trip_seq,
        "telemetry": state.telemetry.as_dict(),
        "shortfall": [[a, r, u] for (a, r), u in sorted(state.shortfall.items())],
    }


OFFER_COLUMNS = (
    "offer_id", "seller", "account", "resource", "quantity", "price", "open_until_tick", "to_agent", "turn",
    "buyer_account", "rounds",
)  # fmt: skip


def offer_rows(state: State) -> dict[str, tuple[Any, ...]]:
    """The open_offers cache as the state implies it: offer id -> the row's other columns (OFFER_COLUMNS)."""
    return {o.offer_id: tuple(getattr(o, name) for name in OFFER_COLUMNS[1:]) for o in state.offers.values()}


ORDER_COLUMNS = (
    "order_id", "agent", "account", "side", "resource", "quantity", "price", "open_until_tick", "arrival",
    "reserved", "value_filled",
)  # fmt: skip


def order_rows(state: State) -> dict[str, tuple[Any, ...]]:
    """The open_orders cache as the state implies it: order id -> the row's other columns (ORDER_COLUMNS)."""
    return {o.order_id: tuple(getattr(o, name) for name in ORDER_COLUMNS[1:]) for o in state.orders.values()}


def participant_rows(state: State) -> dict[str, tuple[Any, ...]]:
    """The participants cache as the state implies it: agent -> the row's other columns."""
    return {
        name: (a.role, a.kind, a.accounts, a.emits_carbon, a.critical_load, a.suspended)
        for name, a in state.agents.items()
    }


def cache_differences(state: State, head_seq: int, head_hash: bytes, caches: Caches) -> Iterator[Difference]:
    """Every difference between the folded state and the caches, table by table, in key order."""
    yield from _diff(
        "world_state",
        {f"{r}@{a}": v for (a, r), v in caches.balances.items()},
        {f"{r}@{a}": v for (a, r), v in state.balances.items()},
        missing=0,
    )
    yield from _diff("open_offers", caches.offers, offer_rows(state))
    yield from _diff("open_orders", caches.orders, order_rows(state))
    yield from _diff("participants", caches.participants, participant_rows(state))
    status = rebuilt_status(state, head_seq, head_hash) if head_seq >= 0 else {}
    yield from _diff("grid_status", caches.status or {}, status)


def _diff(table: str, cached: dict[Any, Any], rebuilt: dict[Any, Any], missing: Any = None) -> Iterator[Difference]:
    for key in sorted(set(cached) | set(rebuilt), key=str):
        old, new = cached.get(key, missing), rebuilt.get(key, missing)
        if old != new:
            yield Difference(f"{table} {key}", _show(old), _show(new))


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# --- reading and the audits built on it ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffsetStats:
    """Decided offsets as stored: rows in ledger + rejections, distinct offsets, highest, and position."""

    decided_rows: int
    distinct_offsets: int
    highest_offset: int  # -1 when nothing is decided
    stored_position: int  # 0 when none is stored


class LedgerReader(Protocol):
    """What an audit reads from a stored ledger."""

    def caches(self) -> Caches: ...
    def entries(self, from_seq: int, to_seq: int) -> Iterator[Entry]: ...
    def consumed_nonces(self, from_offset: int) -> Iterator[ConsumedNonce]: ...
    def checkpoints_newest_first(self, at_or_below_seq: int) -> Iterator[Checkpoint]: ...
    def link(self, seq: int) -> EntryLink | None: ...
    def offset_stats(self) -> OffsetStats: ...
    def orphan_posting_seqs(self, count_max: int) -> list[int]: ...


def rebuild_state(
    reader: LedgerReader, skipped: Callable[[Checkpoint, str, str], None], validator_key: str
) -> tuple[State, Start]:
    """The law's state after the last stored entry, from the newest checkpoint that verifies; raises
    ``LedgerCorrupt`` at the first entry that fails a check (the validator's start-up)."""
    start = choose_start(reader.checkpoints_newest_first(CHECKPOINT_SEQ_ANY), reader.link, skipped, validator_key)
    fold = CheckedFold(start)
    for decided in decided_in_order(reader, start, CHECKPOINT_SEQ_ANY):
        if isinstance(decided, ConsumedNonce):
            fold.consume(decided)
        elif found := fold.add(decided):
            reason, detail = found[0]
            raise LedgerCorrupt(
                f"ledger seq {decided.seq} fails {reason} ({detail}); run `gridgov verify` and `gridgov rehydrate`"
            )
    return fold.state, start


def decided_in_order(reader: LedgerReader, start: Start, to_seq: int) -> Iterator[Decided]:
    """Entries after the start up to ``to_seq`` and the nonces refusals used up, merged by offset."""
    nonces = reader.consumed_nonces(start.next_offset)
    nonce = next(nonces, None)
    # a merge of two streams by offset, not heapq.merge: this runs per entry, and offsets are unique
    for entry in reader.entries(start.state.seq_next, to_seq):
        while nonce is not None and nonce.source_offset < entry.source_offset:
            yield nonce
            nonce = next(nonces, None)
        yield entry
    while nonce is not None:
        yield nonce
        nonce = next(nonces, None)


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # "seq 12", "world_state energy@solar:main", "offsets"
    reason: str  # machine-readable: CHAIN_BROKEN, HASH_MISMATCH, SEQ_GAP, CACHE_MISMATCH, ...
    detail: str


@dataclass
class Report:
    head_seq: int = -1
    head_hash: bytes = GENESIS_PREV_HASH
    entries: int = 0
    problems: list[Problem] = field(default_factory=list)
    state: State = field(default_factory=State)

    def add(self, where: str, reason: str, detail: str) -> None:
        if len(self.problems) < PROBLEMS_REPORTED_MAX:
            self.problems.append(Problem(where, reason, detail))

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(reader: LedgerReader, keys: Keys | None = None) -> Report:
    """Audit everything from T=0: every entry, the caches against the fold, every decided offset in
    exactly one place, and postings that belong to no entry.

    With the validator's ``keys`` (on its host), every entry's stored proposal is also
    re-authenticated with the key in force at its seq and re-decided by the law, and the fold follows
    the law's decisions: an entry whose posting, effect or proposal was rewritten is named by seq even
    when every hash after it was recomputed. Without them (the dashboard holds no key) the checks are
    the chain's alone."""
    caches = reader.caches()
    fold: CheckedFold = CheckedFold(Start()) if keys is None else RedecidingFold(keys)
    report = Report(state=fold.state)
    for decided in decided_in_order(reader, fold.start, caches.head_seq):
        if isinstance(decided, ConsumedNonce):
            fold.consume(decided)
            continue
        for reason, detail in fold.add(decided):
            report.add(f"seq {decided.seq}", reason, detail)
    report.head_seq, report.head_hash, report.entries = fold.head_seq, fold.head_hash, fold.entries
    for d in cache_differences(fold.state, fold.head_seq, fold.head_hash, caches):
        report.add(d.where, "CACHE_MISMATCH", f"cache {d.cached}, fold of ledger {d.rebuilt}")
    _check_offsets(reader.offset_stats(), report)
    for seq in reader.orphan_posting_seqs(PROBLEMS_REPORTED_MAX):
        report.add(f"seq {seq}", "ORPHAN_POSTINGS", "postings exist for a seq with no ledger entry")
    return report


def _check_offsets(stats: OffsetStats, report: Report) -> None:
    """Every offset below the stored position is a ledger entry or a rejection, never both or neither."""
    if stats.decided_rows != stats.distinct_offsets:
        report.add(
            "offsets",
            "DECIDED_TWICE",
            f"{stats.decided_rows - stats.distinct_offsets} offsets are both an entry and a rejection",
        )
    if stats.distinct_offsets and stats.highest_offset + 1 != stats.distinct_offsets:
        missing = stats.highest_offset + 1 - stats.distinct_offsets
        report.add("offsets", "OFFSET_MISSING", f"{missing} offsets below {stats.highest_offset + 1} have no decision")
    if stats.stored_position and stats.stored_position != stats.highest_offset + 1:
        report.add(
            "offsets",
            "POSITION_MISMATCH",
            f"stored position {stats.stored_position}, decided up to {stats.highest_offset + 1}",
        )
