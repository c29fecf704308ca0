"""The Postgres ledger store passes the same contract suite as the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.ledger_store import LedgerStore
from connectors.readmodel.ledger import PgLedgerReader
from core.identities import validator_signer
from tests.support.store_contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, fresh_database: str, tmp_path: Path) -> Iterator[LedgerStore]:
        store = LedgerStore(fresh_database, "contract", "contract.proposals", validator_signer(tmp_path))
        yield store
        store.close()

    @pytest.fixture
    def reader(self, store: LedgerStore, fresh_database: str) -> PgLedgerReader:
        return PgLedgerReader(store.conn, fresh_database)
