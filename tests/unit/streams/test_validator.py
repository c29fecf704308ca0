"""The validator's batching: while the sink has a batch in flight, what is decided meanwhile waits in
one open batch, handed over when the sink is free or the batch is full, and the ledger is the same."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from connectors.memory_store import MemoryLedgerStore
from core.outgoing import Outgoing
from core.rows import Batch, Position
from core.step import LedgerStep
from law import State
from law.ledger import GENESIS_PREV_HASH
from streams.validator import Validator
from streams.workload import Workload
from streams.writer import Committed
from tests.support.adapters import ListConsumer, ListRelay
from tests.support.fold import fold, workload_keyring
from tests.support.store_contract import SECRET, VERSION

TOPIC = "grid.proposals"


@dataclass
class HeldSink:
    """Commits each batch on submit, but while ``holding`` reports it committed only once ``release``
    is called, like a writer process still busy with it."""

    store: MemoryLedgerStore
    holding: bool = True
    submitted: list[int] = field(default_factory=list)  # each batch's decided count, in order
    _held: list[Committed] = field(default_factory=list)
    _released: list[Committed] = field(default_factory=list)

    def submit(self, batch: Batch, state: State, extra: list[Outgoing]) -> None:
        self.store.commit(batch, state, {})
        self.submitted.append(batch.decided_count)
        self._held.append(Committed(batch.next_offset, 0.0, int(time.time() * 1000)))

    def release(self) -> None:
        self._released += self._held
        self._held = []

    def committed(self, wait: bool) -> list[Committed]:
        if wait or not self.holding:
            self.release()
        done, self._released = self._released, []
        return done

    @property
    def in_flight(self) -> int:
        return len(self._held) + len(self._released)

    def flush_relay(self) -> None:
        pass

    def finish(self, next_offset: int, state: State) -> None:
        pass

    def close(self) -> None:
        self.store.close()


def _validator(
    raws: list[bytes], batch_count_max: int, arrived_count: int
) -> tuple[Validator, HeldSink, MemoryLedgerStore]:
    store = MemoryLedgerStore()
    sink = HeldSink(store)
    step = LedgerStep(State(), workload_keyring(SECRET), VERSION)
    position = Position(0, -1, GENESIS_PREV_HASH)
    validator = Validator(
        store, ListConsumer(TOPIC, raws, arrived_count), ListRelay(), step, position, TOPIC, batch_count_max, sink=sink
    )
    return validator, sink, store


def _raws(count: int) -> list[bytes]:
    w = Workload(SECRET, agent_count=6, seed=11, run_id="batching")
    return [w.genesis()] + [m.raw for m in w.messages(count)]


def test_what_is_decided_while_a_batch_is_in_flight_goes_as_one_batch_once_it_commits() -> None:
    raws = _raws(99)
    validator, sink, store = _validator(raws, batch_count_max=100, arrived_count=10)
    validator.poll_once()  # the first batch goes at once: nothing is in flight
    assert sink.submitted == [10]
    for _ in range(3):
        validator.poll_once()  # the sink is busy: these 30 wait in the open batch
    assert sink.submitted == [10] and validator.position.next_offset == 0
    sink.release()
    validator.poll_once()  # 10 more decided, then the commit is noted and the open batch goes
    assert sink.submitted == [10, 40]
    assert validator.position.next_offset == 10
    sink.holding = False
    validator.run_until(len(raws), stall_s=5)
    expected = fold(raws, SECRET, VERSION)
    assert store.ledger == expected.entries
    assert {r.source_offset: r.reason_code for r in store.rejected} == expected.rejections
    assert sum(sink.submitted) == len(raws)


def test_an_open_batch_that_reached_the_most_a_batch_holds_goes_even_while_one_is_in_flight() -> None:
    raws = _raws(44)
    validator, sink, _ = _validator(raws, batch_count_max=20, arrived_count=10)
    validator.poll_once()
    assert sink.submitted == [10]
    validator.poll_once()
    validator.poll_once()  # full: handed over although the first is not committed
    assert sink.submitted == [10, 20]
    validator.poll_once()
    validator.poll_once()  # the last 15 wait for the sink
    assert sink.submitted == [10, 20] and validator.position.next_offset == 0
    validator.flush_relay()  # waiting for the commits hands the open batch over first
    assert sink.submitted == [10, 20, 15]
    assert validator.position.next_offset == len(raws)
