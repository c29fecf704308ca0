"""The ledger store's contract, as one test suite: ``tests/unit/connectors/test_memory_store.py`` runs it against
the in-memory store and ``tests/integration/test_ledger_store.py`` against Postgres (the real one is
never skipped). A subclass provides the ``store`` and ``reader`` fixtures for a fresh, empty ledger."""

from __future__ import annotations

from connectors.ledger_store import LedgerStoreContract
from core.audit import LedgerReader, verify
from core.outgoing import LEDGER_STREAM, REJECTION_STREAM
from core.rows import Batch, Position, Rejection
from core.step import LedgerStep
from law import State
from law.ledger import GENESIS_PREV_HASH
from streams.workload import Workload
from tests.support.fold import workload_keyring

SECRET = bytes(range(32))
VERSION = "contract"
BATCH_COUNT = 100


def stepped(count: int, batch_count: int = BATCH_COUNT) -> tuple[LedgerStep, list[Batch]]:
    """A workload of ``count`` messages after its genesis, decided by the ledger step, cut into batches."""
    w = Workload(SECRET, agent_count=6, seed=3, run_id="contract")
    raws = [w.genesis()] + [m.raw for m in w.messages(count)]
    step = LedgerStep(State(), workload_keyring(SECRET), VERSION)
    batches = []
    for first in range(0, len(raws), batch_count):
        batch = Batch(next_offset=first)
        for offset in range(first, min(len(raws), first + batch_count)):
            result = step.step(raws[offset], offset)
            if isinstance(result, Rejection):
                batch.rejections.append(result)
            else:
                batch.entries.append(result)
            batch.next_offset = offset + 1
        batches.append(batch)
    return step, batches


class StoreContract:
    def test_an_empty_store_has_nothing_to_fold_or_relay(self, store: LedgerStoreContract) -> None:
        assert store.position() == Position(0, -1, GENESIS_PREV_HASH)
        assert store.fold() == State()
        assert store.relay_positions() == {}
        assert store.unrelayed({}) == Batch()

    def test_committed_batches_fold_back_to_the_decided_state(
        self, store: LedgerStoreContract, reader: LedgerReader
    ) -> None:
        step, batches = stepped(450)
        for batch in batches:
            store.commit(batch, step.state, {})
        entries = [e for b in batches for e in b.entries]
        assert store.position() == Position(batches[-1].next_offset, entries[-1].seq, step.head_hash)
        assert store.fold() == step.state
        report = verify(reader)
        assert report.problems == []
        assert (report.head_seq, report.head_hash, report.entries) == (entries[-1].seq, step.head_hash, len(entries))

    def test_unrelayed_is_what_the_relay_has_not_confirmed(self, store: LedgerStoreContract) -> None:
        step, batches = stepped(250)
        first, rest = batches[0], batches[1:]
        store.commit(first, step.state, {})
        confirmed = {
            LEDGER_STREAM: first.entries[-1].seq + 1,
            REJECTION_STREAM: first.rejections[-1].source_offset + 1,
        }
        for batch in rest:
            store.commit(batch, step.state, confirmed)
        assert store.relay_positions() == confirmed
        pending = store.unrelayed(store.relay_positions())
        assert pending.entries == [e for b in rest for e in b.entries]
        assert pending.rejections == [r for b in rest for r in b.rejections]
        assert store.unrelayed({}).entries == [e for b in batches for e in b.entries]

    def test_a_batch_of_rejections_only_moves_the_position(self, store: LedgerStoreContract) -> None:
        step, batches = stepped(10)
        store.commit(batches[0], step.state, {})
        before = store.position()
        garbage = Rejection(before.next_offset, None, None, None, "MALFORMED", "$", "not JSON", None, VERSION, 0, None)
        store.commit(Batch(rejections=[garbage], next_offset=before.next_offset + 1), step.state, {})
        after = store.position()
        assert (after.next_offset, after.head_seq, after.head_hash) == (
            before.next_offset + 1,
            before.head_seq,
            before.head_hash,
        )
        assert store.unrelayed({REJECTION_STREAM: before.next_offset}).rejections == [garbage]
