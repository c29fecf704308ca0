"""The dashboard's queries counted per grid tick: decisions, rejections and trades in each of the last ticks.

The grid's clock is the ledger: the genesis sets the first tick and each meter entry that moves the
clock on (its effects hold ``{"t":"tick"}``) starts the next. Every decision has a source offset, so the
tick a decision was made in is the last tick start at or before its offset, whatever tick the proposal
itself claimed; a tick start belongs to the tick it starts (a uniform-price clearing, which runs in
the meter entry that moves the clock on, counts in the new tick). Each tick carries the wall-clock
time of its start (``at``), for hover text only: no rule reads it.

Every query is bounded by the number of ticks asked for, and the decisions in them are read through
the unique source-offset indexes of ledger and rejections, never by a scan of the whole table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import dict_row

TICKS_MAX = 1_000
# Decisions read per query at most: a bounded index scan even if a tick holds millions of them.
TAIL_ROWS_MAX = 500_000
START_COLUMNS = ["tick", "seq", "source_offset", "at"]

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def tick_starts(conn: Conn, ticks: int) -> pd.DataFrame:
    """Columns tick, seq, source_offset, at: the entries that started each of the last ``ticks`` ticks,
    oldest first (the genesis too, when they reach back to it); empty before the genesis.

    Meter readings are signed by the meter principals, so the (agent, seq) index finds them without a scan.
    """
    ticks = max(1, min(ticks, TICKS_MAX))
    advances = _rows(
        conn,
        """
        SELECT tick, seq, source_offset, recorded_at AS at FROM ledger
        WHERE agent = ANY(SELECT agent FROM participants WHERE role = 'meter') AND kind = 'meter'
          AND effects_json LIKE '%%"t":"tick"%%'
        ORDER BY seq DESC LIMIT %(n)s
        """,
        {"n": ticks},
    )
    if len(advances) < ticks:
        advances += _rows(conn, "SELECT tick, seq, source_offset, recorded_at AS at FROM ledger WHERE seq = 0", {})
    return pd.DataFrame(list(reversed(advances)), columns=START_COLUMNS)


def _per_tick(conn: Conn, starts: pd.DataFrame, query: str, columns: list[str]) -> pd.DataFrame:
    """``query`` grouped by the tick each row's source offset falls in; ``bucket`` in it is that tick's
    1-based position in ``starts`` (Postgres' ``width_bucket`` over the starts' offsets)."""
    if starts.empty:
        return pd.DataFrame(columns=["tick", "at", *columns])
    offsets = [int(o) for o in starts["source_offset"]]
    rows = _rows(conn, query, {"edges": offsets, "from": offsets[0], "tail": TAIL_ROWS_MAX})
    frame = pd.DataFrame(rows, columns=["bucket", *columns])
    if frame.empty:
        return pd.DataFrame(columns=["tick", "at", *columns])
    position = frame.pop("bucket").to_numpy(dtype=int) - 1
    frame.insert(0, "at", starts["at"].iloc[position].reset_index(drop=True))
    frame.insert(0, "tick", starts["tick"].iloc[position].reset_index(drop=True))
    return frame


def decisions_per_tick(conn: Conn, ticks: int) -> pd.DataFrame:
    """Columns tick, at, outcome, count: accepted and rejected decisions in each of the last ``ticks`` ticks."""
    return _per_tick(
        conn,
        tick_starts(conn, ticks),
        """
        SELECT width_bucket(source_offset, %(edges)s::bigint[]) AS bucket, outcome, count(*) AS count
        FROM (
            (SELECT source_offset, 'accepted' AS outcome FROM ledger WHERE source_offset >= %(from)s
             ORDER BY source_offset DESC LIMIT %(tail)s)
            UNION ALL
            (SELECT source_offset, 'rejected' FROM rejections WHERE source_offset >= %(from)s
             ORDER BY source_offset DESC LIMIT %(tail)s)
        ) d
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        ["outcome", "count"],
    )


def rejections_per_tick(conn: Conn, ticks: int) -> pd.DataFrame:
    """Columns tick, at, reason_code, agent, count: the rejections of each of the last ``ticks`` ticks."""
    return _per_tick(
        conn,
        tick_starts(conn, ticks),
        """
        SELECT width_bucket(source_offset, %(edges)s::bigint[]) AS bucket, reason_code,
               coalesce(agent, '(unknown)') AS agent, count(*) AS count
        FROM (SELECT source_offset, reason_code, agent FROM rejections WHERE source_offset >= %(from)s
              ORDER BY source_offset DESC LIMIT %(tail)s) r
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """,
        ["reason_code", "agent", "count"],
    )


def trades_per_tick(conn: Conn, ticks: int) -> pd.DataFrame:
    """Columns tick, at, resource, volume, paid, trades: the book's fills and the accepted offers of each
    of the last ``ticks`` ticks (paid in millicredits; paid / volume is a tick's clearing price when the
    uniform-price mechanism is in force, the average price otherwise)."""
    return _per_tick(
        conn,
        tick_starts(conn, ticks),
        """
        WITH recent AS (
            SELECT seq, source_offset, kind, effects_json, proposal_json FROM ledger
            WHERE source_offset >= %(from)s AND kind IN ('bid', 'ask', 'meter', 'accept')
            ORDER BY source_offset DESC LIMIT %(tail)s
        ),
        fills AS (
            SELECT r.source_offset, e->>'resource' AS resource, (e->>'quantity')::bigint AS volume,
                   (e->>'payment')::bigint AS paid
            FROM recent r, jsonb_array_elements(r.effects_json::jsonb) e
            -- the text test first: parsing every meter entry's effects is what would cost
            WHERE r.kind <> 'accept' AND r.effects_json LIKE '%%"t":"fill"%%' AND e->>'t' = 'fill'
        ),
        accepted AS (  -- an accept's postings: the buyer's account gets the goods and pays the price
            SELECT r.source_offset, max(p.resource) FILTER (WHERE p.resource <> 'credits') AS resource,
                   sum(p.amount) FILTER (WHERE p.resource <> 'credits')::bigint AS volume,
                   -sum(p.amount) FILTER (WHERE p.resource = 'credits')::bigint AS paid
            FROM recent r JOIN postings p
              ON p.seq = r.seq AND p.account = r.proposal_json::jsonb->'body'->>'account'
            WHERE r.kind = 'accept'
            GROUP BY r.seq, r.source_offset
        )
        SELECT width_bucket(source_offset, %(edges)s::bigint[]) AS bucket, resource,
               sum(volume)::bigint AS volume, sum(paid)::bigint AS paid, count(*) AS trades
        FROM (SELECT * FROM fills UNION ALL SELECT * FROM accepted) t
        WHERE volume > 0
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        ["resource", "volume", "paid", "trades"],
    )
