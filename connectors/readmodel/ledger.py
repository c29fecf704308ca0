"""Reading the stored ledger for the audit, the validator's start-up, the relay's catch-up and the CLI.

Entries and their postings arrive in one binary ``COPY TO STDOUT`` on a connection of their own (no
cursor round trips; the server joins and encodes on its own core, and the reader's main connection
stays free for checkpoint reads during a fold). The row layout is ``core.rows``'.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core.audit import (
    OFFER_COLUMNS,
    ORDER_COLUMNS,
    STATUS_KEYS,
    Caches,
    Checkpoint,
    EntryLink,
    OffsetStats,
    Report,
    verify,
)
from core.rows import LEDGER_COLUMN_NAMES, LEDGER_TYPES, ConsumedNonce, entry_from_row
from law.decide import Keys
from law.ledger import GENESIS_PREV_HASH, Entry

CONNECT_TIMEOUT_S = 5
_LEDGER_COLUMNS_OF_L = sql.SQL(", ").join(sql.Identifier("l", c) for c in LEDGER_COLUMN_NAMES)
_LEGS_INDEX = len(LEDGER_COLUMN_NAMES)


class PgLedgerReader:
    """``core.audit.LedgerReader`` over Postgres. ``conn`` is used for short reads, each committed."""

    def __init__(self, conn: psycopg.Connection[Any], database_url: str) -> None:
        self.conn, self.database_url = conn, database_url

    def entries(self, from_seq: int, to_seq: int) -> Iterator[Entry]:
        """Entries with seq in [from_seq, to_seq], in seq order, with their postings.

        The server groups each entry's postings into one JSON array (a merge join on the primary keys),
        which costs the client one ``orjson.loads`` instead of a row per posting. Postings whose entry
        is gone are not joined, so they cannot shift later entries' postings (the audit reports them).
        """
        query = sql.SQL(
            "COPY (SELECT {}, p.legs FROM ledger l LEFT JOIN ("
            "SELECT seq, json_agg(json_build_array(account, resource, amount) ORDER BY idx)::text AS legs "
            "FROM postings WHERE seq BETWEEN {} AND {} GROUP BY seq) p ON p.seq = l.seq "
            "WHERE l.seq BETWEEN {} AND {} ORDER BY l.seq) TO STDOUT (FORMAT BINARY)"
        ).format(_LEDGER_COLUMNS_OF_L, *[sql.Literal(s) for s in (from_seq, to_seq, from_seq, to_seq)])
        with psycopg.connect(self.database_url) as conn, conn.cursor().copy(query) as copy:
            copy.set_types([*LEDGER_TYPES, "text"])
            for row in copy.rows():
                legs = row[_LEGS_INDEX]
                yield entry_from_row(row, tuple(map(tuple, orjson.loads(legs))) if legs else ())

    def consumed_nonces(self, from_offset: int) -> Iterator[ConsumedNonce]:
        """Refusals at or after ``from_offset`` that used up a nonce, in offset order."""
        query = sql.SQL(
            "COPY (SELECT source_offset, agent, nonce FROM rejections WHERE nonce IS NOT NULL AND source_offset >= {} "
            "ORDER BY source_offset) TO STDOUT (FORMAT BINARY)"
        ).format(sql.Literal(from_offset))
        with psycopg.connect(self.database_url) as conn, conn.cursor().copy(query) as copy:
            copy.set_types(["int8", "text", "int8"])
            for offset, agent, nonce in copy.rows():
                yield ConsumedNonce(offset, agent, nonce)

    def caches(self) -> Caches:
        """The validator's caches and the ledger head they belong to, in one snapshot."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            head = self.conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
            balances = {
                (a, r): b for a, r, b in self.conn.execute("SELECT account, resource, balance FROM world_state")
            }
            offers = {
                row[0]: tuple(row[1:])
                for row in self.conn.execute(f"SELECT {', '.join(OFFER_COLUMNS)} FROM open_offers")
            }
            orders = {
                row[0]: tuple(row[1:])
                for row in self.conn.execute(f"SELECT {', '.join(ORDER_COLUMNS)} FROM open_orders")
            }
            participants = {
                row[0]: (row[1], row[2], tuple(row[3]), *row[4:])
                for row in self.conn.execute(
                    "SELECT agent, role, kind, accounts, emits_carbon, critical_load, suspended FROM participants"
                )
            }
            status = grid_status(self.conn)
        return Caches(
            head_seq=head[0] if head else -1,
            head_hash=bytes(head[1]) if head else GENESIS_PREV_HASH,
            balances=balances,
            offers=offers,
            orders=orders,
            participants=participants,
            status={key: status[key] for key in STATUS_KEYS} if status else None,
        )

    def checkpoints_newest_first(self, at_or_below_seq: int) -> Iterator[Checkpoint]:
        """Checkpoints at or below a seq, newest first, each read when it is asked for."""
        rows = self.conn.execute(
            "SELECT seq FROM checkpoints WHERE seq <= %s ORDER BY seq DESC", (at_or_below_seq,)
        ).fetchall()
        self.conn.commit()
        for (seq,) in rows:
            found = self.checkpoint(seq)
            if found is not None:
                yield found

    def checkpoint(self, seq: int) -> Checkpoint | None:
        row = self.conn.execute(
            "SELECT seq, ledger_hash, next_offset, state_json, hash, signature FROM checkpoints WHERE seq = %s",
            (seq,),
        ).fetchone()
        self.conn.commit()
        if row is None or row[2] is None:
            return None  # none, or written before checkpoints recorded their offset: unusable
        signature = None if row[5] is None else bytes(row[5])
        return Checkpoint(row[0], bytes(row[1]), row[2], row[3], bytes(row[4]), signature)

    def checkpoint_seqs(self, from_seq: int, to_seq: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT seq FROM checkpoints WHERE seq BETWEEN %s AND %s ORDER BY seq", (from_seq, to_seq)
        ).fetchall()
        self.conn.commit()
        return [r[0] for r in rows]

    def link(self, seq: int) -> EntryLink | None:
        row = self.conn.execute("SELECT hash, source_offset FROM ledger WHERE seq = %s", (seq,)).fetchone()
        self.conn.commit()
        return (bytes(row[0]), row[1]) if row else None

    def offset_stats(self) -> OffsetStats:
        row = self.conn.execute(
            "WITH decided AS (SELECT source_offset FROM ledger UNION ALL SELECT source_offset FROM rejections) "
            "SELECT count(*), count(DISTINCT source_offset), coalesce(max(source_offset), -1) FROM decided"
        ).fetchone()
        position = self.conn.execute("SELECT coalesce(max(next_offset), 0) FROM consumer_position").fetchone()
        self.conn.commit()
        assert row is not None and position is not None, "aggregates always return one row"
        return OffsetStats(row[0], row[1], row[2], position[0])

    def orphan_posting_seqs(self, count_max: int) -> list[int]:
        """Seqs that have postings but no ledger entry: an entry row was removed."""
        rows = self.conn.execute(
            "SELECT DISTINCT p.seq FROM postings p LEFT JOIN ledger l ON l.seq = p.seq WHERE l.seq IS NULL "
            "ORDER BY p.seq LIMIT %s",
            (count_max,),
        ).fetchall()
        self.conn.commit()
        return [seq for (seq,) in rows]


def grid_status(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The validator's cached view of the grid after its last batch: JSON columns parsed (``policy``,
    ``telemetry``, ``shortfall``), ``head_hash`` in hex; None before genesis."""
    row = conn.cursor(row_factory=dict_row).execute("SELECT * FROM grid_status").fetchone()
    if row is None:
        return None
    for name in ("policy_json", "telemetry_json", "shortfall_json"):
        row[name.removesuffix("_json")] = orjson.loads(row.pop(name))
    row["head_hash"] = bytes(row["head_hash"]).hex()
    return row


def participants(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The registry as the validator cached it, by agent name."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT agent, role, kind, accounts, emits_carbon, critical_load, suspended "
            "FROM participants ORDER BY agent"
        )
        .fetchall()
    )


def last_nonce(conn: psycopg.Connection[Any], agent: str) -> int:
    """The last nonce the validator decided for ``agent`` (accepted, or refused once authenticated); 0
    when none. A producer starts its nonces above it (``schemas.envelope.Nonces``)."""
    row = conn.execute(
        "SELECT greatest((SELECT max(nonce) FROM ledger WHERE agent = %(a)s), "
        "(SELECT max(nonce) FROM rejections WHERE agent = %(a)s AND nonce IS NOT NULL))",
        {"a": agent},
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def decision_of(conn: psycopg.Connection[Any], proposal_id: str) -> str | None:
    """A one-line outcome once the validator decided ``proposal_id`` (its latest rejection if rejected)."""
    entry = conn.execute("SELECT seq FROM ledger WHERE proposal_id = %s", (proposal_id,)).fetchone()
    if entry is not None:
        return f"accepted as ledger seq {entry[0]}"
    rejection = conn.execute(
        "SELECT reason_code, detail FROM rejections WHERE proposal_id = %s ORDER BY source_offset DESC LIMIT 1",
        (proposal_id,),
    ).fetchone()
    return f"rejected {rejection[0]}: {rejection[1]}" if rejection else None


def key_generation(conn: psycopg.Connection[Any], agent: str) -> int:
    """The generation of ``agent``'s HMAC key in force: how many rekeys of it the ledger holds."""
    rows = conn.execute("SELECT effects_json FROM ledger WHERE kind = 'participant_rekey' ORDER BY seq").fetchall()
    effects = [e for (text,) in rows for e in orjson.loads(text) if e.get("agent") == agent and "generation" in e]
    return max((e["generation"] for e in effects), default=0)


def audit_database(database_url: str, keys: Keys | None = None) -> Report:
    """``core.audit.verify`` of the ledger at ``database_url``; with the validator's ``keys``, every
    entry is also re-authenticated and re-decided."""
    with psycopg.connect(database_url) as conn:
        return verify(PgLedgerReader(conn, database_url), keys)


def producer_position(database_url: str, agent: str) -> tuple[int, int]:
    """(the grid's tick, the last nonce decided for ``agent``) for a one-off producer such as the CLI;
    (0, 0) before genesis or when the database is unreachable (the validator then decides, visibly)."""
    try:
        with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            row = conn.execute("SELECT tick FROM grid_status").fetchone()
            return (int(row[0]) if row else 0), last_nonce(conn, agent)
    except psycopg.Error:
        return 0, 0
