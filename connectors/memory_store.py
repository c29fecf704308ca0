"""An in-memory ledger store with the Postgres store's contract, for tests and pure runs.

It keeps entries, rejections, positions and the caches a commit writes, so ``core.audit.verify`` runs
on it exactly as on Postgres; one contract suite (``tests/support/store_contract.py``) runs against
both. Nothing here is durable: a process that ends loses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.audit import (
    Caches,
    Checkpoint,
    EntryLink,
    OffsetStats,
    offer_rows,
    order_rows,
    participant_rows,
    rebuild_state,
    rebuilt_status,
)
from core.outgoing import LEDGER_STREAM, REJECTION_STREAM
from core.rows import Batch, ConsumedNonce, Position, Rejection
from law import State
from law.ledger import GENESIS_PREV_HASH, Entry

NO_CHECKPOINT_KEY = ""  # memory keeps no checkpoints, so there is no signature to check


@dataclass
class MemoryLedgerStore:
    ledger: list[Entry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    next_offset: int = 0
    relay: dict[str, int] = field(default_factory=dict)
    cached: Caches = field(default_factory=lambda: Caches(-1, GENESIS_PREV_HASH, {}, {}, {}, {}, None))
    locked: bool = False
    closed: bool = False

    # --- the validator's side (``connectors.ledger_store.LedgerStoreContract``) ----------------------

    def lock(self) -> bool:
        taken, self.locked = not self.locked, True
        return taken

    def position(self) -> Position:
        head = self.ledger[-1] if self.ledger else None
        return Position(self.next_offset, head.seq if head else -1, head.hash if head else GENESIS_PREV_HASH)

    def fold(self) -> State:
        return rebuild_state(self, lambda *_: None, NO_CHECKPOINT_KEY)[0]

    def commit(self, batch: Batch, state: State, relay: dict[str, int]) -> None:
        """Append the batch and refresh the caches, as the Postgres transaction does (all or nothing:
        the checks run before anything is appended)."""
        assert not self.closed, "commit on a closed store"
        expected = self.ledger[-1].seq + 1 if self.ledger else 0
        assert [e.seq for e in batch.entries] == list(range(expected, expected + len(batch.entries))), "seq gap"
        assert batch.next_offset >= self.next_offset, "the position only moves forward"
        self.ledger += batch.entries
        self.rejected += batch.rejections
        self.relay.update(relay)
        self.next_offset = batch.next_offset
        if batch.entries:
            self.cached = _caches_of(state, batch.entries[-1])

    def relay_positions(self) -> dict[str, int]:
        return dict(self.relay)

    def unrelayed(self, confirmed: dict[str, int]) -> Batch:
        entries = self.ledger[confirmed.get(LEDGER_STREAM, 0) :]
        first_offset = confirmed.get(REJECTION_STREAM, 0)
        return Batch(entries=list(entries), rejections=[r for r in self.rejected if r.source_offset >= first_offset])

    def close(self) -> None:
        self.closed = True

    # --- the audit's side (``core.audit.LedgerReader``) --------------------------------------------

    def caches(self) -> Caches:
        return self.cached

    def entries(self, from_seq: int, to_seq: int) -> Iterator[Entry]:
        return (e for e in self.ledger if from_seq <= e.seq <= to_seq)

    def consumed_nonces(self, from_offset: int) -> Iterator[ConsumedNonce]:
        return (
            ConsumedNonce(r.source_offset, r.agent, r.nonce)
            for r in self.rejected
            if r.nonce is not None and r.agent is not None and r.source_offset >= from_offset
        )

    def checkpoints_newest_first(self, at_or_below_seq: int) -> Iterator[Checkpoint]:
        return iter(())  # checkpoints are a durability optimisation; memory has nothing to resume

    def link(self, seq: int) -> EntryLink | None:
        found = next((e for e in self.ledger if e.seq == seq), None)
        return (found.hash, found.source_offset) if found else None

    def offset_stats(self) -> OffsetStats:
        offsets = [e.source_offset for e in self.ledger] + [r.source_offset for r in self.rejected]
        return OffsetStats(len(offsets), len(set(offsets)), max(offsets, default=-1), self.next_offset)

    def orphan_posting_seqs(self, count_max: int) -> list[int]:
        return []  # postings live inside their entries here


def _caches_of(state: State, head: Entry) -> Caches:
    """Copies, not references: the validator goes on mutating ``state`` after the commit."""
    return Caches(
        head_seq=head.seq,
        head_hash=head.hash,
        balances=dict(state.balances),
        offers=offer_rows(state),
        orders=order_rows(state),
        participants=participant_rows(state),
        status=rebuilt_status(state, head.seq, head.hash),
    )
