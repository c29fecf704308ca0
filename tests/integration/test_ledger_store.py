"""The Postgres ledger store passes the same contract suite as the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.ledger_store import LedgerStore
from connectors.readmodel.ledger import PgLedgerReader
from tests.support.store_contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, fresh_database: str) -> Iterator[LedgerStore]:
        store = LedgerStore(fresh_database, "contract", "contract.proposals")
        yield store
        store.close()

    @pytest.fixture
    def reader(self, store: LedgerStore, fresh_database: str) -> PgLedgerReader:
        return PgLedgerReader(store.conn, fresh_database)
