"""The in-memory store passes the store contract, and the validator runs on it with no Kafka or
Postgres: its loop is the same whatever adapters it is handed."""

from __future__ import annotations

import threading

import pytest

from connectors.memory_store import MemoryLedgerStore
from core.rows import Position
from core.step import LedgerStep
from law import State
from law.ledger import GENESIS_PREV_HASH
from streams.validator import Validator
from streams.workload import Workload
from tests.support.adapters import ListConsumer, ListRelay
from tests.support.fold import fold, workload_keyring
from tests.support.store_contract import SECRET, VERSION, StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryLedgerStore:
        return MemoryLedgerStore()

    @pytest.fixture
    def reader(self, store: MemoryLedgerStore) -> MemoryLedgerStore:
        return store


def test_the_validator_on_the_memory_store_writes_what_the_pure_fold_gives() -> None:
    w = Workload(SECRET, agent_count=8, seed=5, run_id="mem")
    raws = [w.genesis()] + [m.raw for m in w.messages(1_200)]
    store, consumer, relay = MemoryLedgerStore(), ListConsumer("grid.proposals", raws), ListRelay()
    step = LedgerStep(State(), workload_keyring(SECRET), VERSION)
    validator = Validator(store, consumer, relay, step, Position(0, -1, GENESIS_PREV_HASH), "grid.proposals", 100)
    validator.run_until(len(raws), stall_s=5)
    validator.run(threading.Event(), idle_exit_s=0)
    expected = fold(raws, SECRET, VERSION)
    assert store.ledger == expected.entries
    assert {r.source_offset: r.reason_code for r in store.rejected} == expected.rejections
    assert store.fold() == expected.state
    assert consumer.committed[-1] == len(raws) and store.closed
    assert [e for b in relay.published for e in b.entries] == expected.entries
