"""Reads that a replay compares: positions, per-entry digests, outcomes by offset and balances."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

FETCH_COUNT = 10_000


def stored_position(database_url: str, topic: str | None = None) -> int | None:
    """The highest next offset stored (for ``topic``, or any); None when nothing was decided, or
    before the migrations created the table."""
    query = "SELECT max(next_offset) FROM consumer_position" + (" WHERE topic = %s" if topic else "")
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(query, (topic,) if topic else ()).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row[0]) if row and row[0] is not None else None


def entry_count(database_url: str) -> int:
    """Ledger entries in the database; 0 when it has no ledger table yet."""
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('ledger') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            return 0
        row = conn.execute("SELECT count(*) FROM ledger").fetchone()
    return int(row[0]) if row else 0


def _stream(url: str, query: str, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor(name="replay_read") as cur:
        cur.itersize = FETCH_COUNT
        cur.execute(query, params)
        yield from cur


def entry_digests(url: str, to_offset: int) -> Iterator[tuple[Any, ...]]:
    """(seq, source_offset, proposal_id, validator_version, hash) of entries decided below ``to_offset``."""
    query = (
        "SELECT seq, source_offset, proposal_id, validator_version, hash FROM ledger "
        "WHERE source_offset < %s ORDER BY seq"
    )
    return _stream(url, query, (to_offset,))


def outcomes(url: str, to_offset: int) -> Iterator[tuple[Any, ...]]:
    """(offset, proposal id, agent, kind, ACCEPTED or the reason, detail) of every offset below the bound."""
    query = (
        "SELECT source_offset, proposal_id, agent, kind, 'ACCEPTED', '' FROM ledger WHERE source_offset < %s "
        "UNION ALL SELECT source_offset, proposal_id, agent, kind, reason_code, detail FROM rejections "
        "WHERE source_offset < %s ORDER BY 1"
    )
    return _stream(url, query, (to_offset, to_offset))


def balances(url: str, to_offset: int) -> dict[tuple[str, str], int]:
    """Every (account, resource) balance the entries decided below ``to_offset`` add up to."""
    query = (
        "SELECT account, resource, sum(amount)::bigint FROM postings JOIN ledger USING (seq) "
        "WHERE source_offset < %s GROUP BY account, resource"
    )
    with psycopg.connect(url) as conn:
        return {(a, r): v for a, r, v in conn.execute(query, (to_offset,))}


def account_owners(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {
            a: agent for agent, accounts in conn.execute("SELECT agent, accounts FROM participants") for a in accounts
        }


def policy_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT policy_version FROM grid_status").fetchone()
    return int(row[0]) if row else 0


def head_below(url: str, to_offset: int) -> tuple[bytes, str] | None:
    """The hash and version stamp of the last entry decided from an offset below ``to_offset``; None
    before any."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT hash, validator_version FROM ledger WHERE source_offset < %s ORDER BY seq DESC LIMIT 1",
            (to_offset,),
        ).fetchone()
    return (bytes(row[0]), str(row[1])) if row else None
