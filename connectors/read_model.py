"""The read model: SQL that reads the ledger tables and their caches, in one place.

Writers live in ``connectors.ledger_store`` (the validator's transaction); everything that only reads
(the CLI, the audit, the dashboard, the simulation summary) reads through here.
"""

from __future__ import annotations

import psycopg

CONNECT_TIMEOUT_S = 5


def current_tick(database_url: str) -> int:
    """The grid's tick as the validator last committed it; 0 before genesis or when unreachable."""
    try:
        with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            row = conn.execute("SELECT tick FROM grid_status").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0
