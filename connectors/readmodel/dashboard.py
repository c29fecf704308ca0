"""Every SQL statement the dashboard runs. Each function takes an open read-only connection and returns
plain data (a DataFrame, a dict or None); nothing here knows about Streamlit.

The ledger can hold millions of rows, so every query is bounded: recent activity is read from the tail
of an append-only table through its primary key (``ORDER BY seq DESC LIMIT n``), never by scanning
for a time range, and lookups use the unique or composite indexes of 0001_ledger.sql.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pandas as pd
import psycopg
from psycopg.rows import dict_row

# grid_status is read here by name too: the dashboard fetches every query from this module.
from connectors.readmodel.ledger import grid_status as grid_status
from core.rows import LEDGER_COLUMNS
from schemas.proposal import GOVERNANCE_KINDS

# Rows read from the tail of ledger/rejections to measure recent activity: far more than a minute
# holds at the validator's measured rates, yet a bounded index scan.
TAIL_ROWS_MAX = 200_000
ROWS_SHOWN_MAX = 200
LINEAR_IDENTIFIER = re.compile(r"/issue/([A-Za-z0-9]+-\d+)")

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _frame(
    conn: Conn, query: str, params: dict[str, Any] | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    rows = _rows(conn, query, params)
    return pd.DataFrame(rows, columns=columns) if not rows else pd.DataFrame(rows)


def _one(conn: Conn, query: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


def has_table(conn: Conn, name: str) -> bool:
    row = _one(conn, "SELECT to_regclass(%(name)s) IS NOT NULL AS present", {"name": name})
    return bool(row and row["present"])


# --- overview ----------------------------------------------------------------------------------------


def ledger_head(conn: Conn) -> dict[str, Any] | None:
    row = _one(conn, "SELECT seq, hash, prev_hash, recorded_at FROM ledger ORDER BY seq DESC LIMIT 1")
    if row is not None:
        row["hash"], row["prev_hash"] = bytes(row["hash"]).hex(), bytes(row["prev_hash"]).hex()
    return row


def totals(conn: Conn) -> dict[str, int]:
    """Accepted entries (seq is gap-free, so the head tells) and rejections, all time."""
    row = _one(
        conn,
        "SELECT coalesce((SELECT max(seq) + 1 FROM ledger), 0) AS accepted, "
        "(SELECT count(*) FROM rejections) AS rejected",
    )
    assert row is not None
    return {"accepted": int(row["accepted"]), "rejected": int(row["rejected"])}


_RECENT = """
    SELECT recorded_at, 'accepted' AS outcome
      FROM (SELECT recorded_at FROM ledger ORDER BY seq DESC LIMIT %(tail)s) l
    UNION ALL
    SELECT recorded_at, 'rejected'
      FROM (SELECT recorded_at FROM rejections ORDER BY source_offset DESC LIMIT %(tail)s) r
"""


def decisions_per_s(conn: Conn, window_s: int) -> dict[str, float]:
    """Accepted and rejected decisions per second over the last ``window_s`` seconds of wall-clock time."""
    rows = _rows(
        conn,
        f"SELECT outcome, count(*) AS n FROM ({_RECENT}) recent "
        "WHERE recorded_at > now() - make_interval(secs => %(window_s)s) GROUP BY outcome",
        {"tail": TAIL_ROWS_MAX, "window_s": window_s},
    )
    counts = {r["outcome"]: r["n"] for r in rows}
    return {outcome: counts.get(outcome, 0) / window_s for outcome in ("accepted", "rejected")}


def consumer_next_offset(conn: Conn, topic: str) -> int | None:
    """The next proposal offset the validator will decide (its position is stored with its effects)."""
    row = _one(conn, "SELECT max(next_offset) AS next_offset FROM consumer_position WHERE topic = %(t)s", {"t": topic})
    return None if row is None or row["next_offset"] is None else int(row["next_offset"])


# --- flows -------------------------------------------------------------------------------------------

_OWNERS = "SELECT agent, unnest(accounts) AS account FROM participants"


def seq_window(conn: Conn, entries: int) -> dict[str, Any] | None:
    """The last ``entries`` entries as a seq range, with the ticks and wall-clock times they span."""
    return _one(
        conn,
        "SELECT min(seq) AS first_seq, max(seq) AS last_seq, min(tick) AS first_tick, max(tick) AS last_tick, "
        "min(recorded_at) AS first_at, max(recorded_at) AS last_at "
        "FROM (SELECT seq, tick, recorded_at FROM ledger ORDER BY seq DESC LIMIT %(n)s) w HAVING count(*) > 0",
        {"n": entries},
    )


def flows(conn: Conn, resource: str, from_seq: int) -> pd.DataFrame:
    """Columns source, target, amount, entries: ``resource`` moved between participants from ``from_seq``.

    Within one entry each debited account sends to each credited account in proportion to the credits,
    which is exact for the usual one-to-one and one-to-many entries. Accounts are named by their owner;
    system accounts (production, consumption, treasury, genesis) keep their own names.
    """
    return _frame(
        conn,
        f"""
        WITH owners AS ({_OWNERS}),
        legs AS (
            SELECT p.seq, coalesce(o.agent, p.account) AS party, p.amount
            FROM postings p LEFT JOIN owners o ON o.account = p.account
            WHERE p.seq >= %(from_seq)s AND p.resource = %(resource)s AND p.amount <> 0),
        debits AS (SELECT seq, party, -amount AS amount FROM legs WHERE amount < 0),
        credits AS (SELECT seq, party, amount, sum(amount) OVER (PARTITION BY seq) AS total FROM legs WHERE amount > 0)
        SELECT d.party AS source, c.party AS target,
               round(sum(d.amount::numeric * c.amount / c.total))::bigint AS amount,
               count(DISTINCT d.seq) AS entries
        FROM debits d JOIN credits c USING (seq)
        WHERE d.party <> c.party
        GROUP BY 1, 2 ORDER BY amount DESC
        """,
        {"from_seq": from_seq, "resource": resource},
        ["source", "target", "amount", "entries"],
    )


def balances_now(conn: Conn, resource: str) -> pd.DataFrame:
    """Columns account, participant, balance: current balances of participants' accounts."""
    return _frame(
        conn,
        f"""
        WITH owners AS ({_OWNERS})
        SELECT w.account, coalesce(o.agent, w.account) AS participant, w.balance
        FROM world_state w LEFT JOIN owners o ON o.account = w.account
        WHERE w.resource = %(resource)s AND w.account NOT LIKE 'system:%%'
        ORDER BY w.account
        """,
        {"resource": resource},
        ["account", "participant", "balance"],
    )


def balance_changes(conn: Conn, resource: str, from_seq: int) -> pd.DataFrame:
    """Columns seq, tick, account, amount: net change of each participant account per entry from ``from_seq``."""
    return _frame(
        conn,
        """
        SELECT p.seq, l.tick, p.account, sum(p.amount)::bigint AS amount
        FROM postings p JOIN ledger l ON l.seq = p.seq
        WHERE p.seq >= %(from_seq)s AND p.resource = %(resource)s AND p.account NOT LIKE 'system:%%'
        GROUP BY p.seq, l.tick, p.account ORDER BY p.seq
        """,
        {"from_seq": from_seq, "resource": resource},
        ["seq", "tick", "account", "amount"],
    )


def operators(conn: Conn) -> list[str]:
    return [r["agent"] for r in _rows(conn, "SELECT agent FROM participants WHERE role = 'operator' ORDER BY agent")]


def meter_history(conn: Conn, limit: int) -> pd.DataFrame:
    """Columns seq, tick, at, and the telemetry fields: grid health after each of the last ``limit`` meter entries.

    Meter readings are signed by the meter principals, so the (agent, seq) index finds them without a scan.
    """
    meters = [r["agent"] for r in _rows(conn, "SELECT agent FROM participants WHERE role = 'meter'")]
    rows = _rows(
        conn,
        "SELECT seq, tick, recorded_at, effects_json FROM ledger WHERE agent = ANY(%(meters)s) AND kind = 'meter' "
        "ORDER BY seq DESC LIMIT %(n)s",
        {"meters": meters, "n": limit},
    )
    records = []
    for row in reversed(rows):
        effects: list[dict[str, Any]] = orjson.loads(row["effects_json"])
        telemetry: dict[str, int] = next((e["values"] for e in effects if e["t"] == "telemetry"), {})
        records.append({"seq": row["seq"], "tick": row["tick"], "at": row["recorded_at"], **telemetry})
    return pd.DataFrame(records)


def shortfall_now(conn: Conn) -> pd.DataFrame:
    """Columns participant, account, resource, unmet: unmet demand after the last meter entry."""
    status = _one(conn, "SELECT shortfall_json FROM grid_status")
    units = orjson.loads(status["shortfall_json"]) if status else []
    owners = {r["account"]: r["agent"] for r in _rows(conn, _OWNERS)}
    records = [{"participant": owners.get(a, a), "account": a, "resource": r, "unmet": u} for a, r, u in units]
    return pd.DataFrame(records, columns=["participant", "account", "resource", "unmet"])


# --- rejections --------------------------------------------------------------------------------------


_REJECTION_COLUMNS = [
    "source_offset", "recorded_at", "proposal_id", "agent", "kind", "reason_code", "field", "detail", "tick",
    "policy_version", "conflict_id", "issue_url", "delivery_state",
]  # fmt: skip
# The sinks record which Linear delivery accounts for each rejection (``rejection:rej:<offset>``); that
# delivery names the conflict, and the conflict row holds the issue once Linear confirmed it.
_TICKET_JOINS = """
    LEFT JOIN sink_records sr ON sr.sink = 'linear' AND sr.record_id = 'rejection:rej:' || r.source_offset
    LEFT JOIN sink_deliveries d ON d.delivery_id = sr.delivery_id
    LEFT JOIN sink_conflicts c ON c.conflict_id = d.conflict_id
"""


def _with_tickets(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ticket"] = [ticket_label(u, s) for u, s in zip(frame["issue_url"], frame["delivery_state"], strict=True)]
    return frame


def recent_rejections(conn: Conn, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame:
    """The newest rejections, each with the Linear ticket its conflict became."""
    routed = has_table(conn, "sink_conflicts")
    tickets = "d.conflict_id, c.issue_url, d.state" if routed else "NULL AS conflict_id, NULL AS issue_url, NULL"
    frame = _frame(
        conn,
        f"""
        SELECT r.source_offset, r.recorded_at, r.proposal_id, r.agent, r.kind, r.reason_code, r.field, r.detail,
               r.tick, r.policy_version, {tickets} AS delivery_state
        FROM (SELECT * FROM rejections ORDER BY source_offset DESC LIMIT %(limit)s) r {_TICKET_JOINS if routed else ""}
        ORDER BY r.source_offset DESC
        """,
        {"limit": limit},
        _REJECTION_COLUMNS,
    )
    return _with_tickets(frame)


def conflict_rejections(conn: Conn, conflict_id: str, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame:
    """The rejections the sinks grouped into one conflict, newest first (empty before the sinks exist)."""
    if not has_table(conn, "sink_conflicts"):
        return _with_tickets(pd.DataFrame(columns=_REJECTION_COLUMNS))
    frame = _frame(
        conn,
        """
        SELECT r.source_offset, r.recorded_at, r.proposal_id, r.agent, r.kind, r.reason_code, r.field, r.detail,
               r.tick, r.policy_version, d.conflict_id, c.issue_url, d.state AS delivery_state
        FROM sink_deliveries d
        JOIN sink_records sr ON sr.delivery_id = d.delivery_id AND sr.record_id LIKE 'rejection:rej:%%'
        JOIN rejections r ON r.source_offset = substring(sr.record_id FROM 15)::bigint
        LEFT JOIN sink_conflicts c ON c.conflict_id = d.conflict_id
        WHERE d.sink = 'linear' AND d.conflict_id = %(conflict)s
        ORDER BY r.source_offset DESC LIMIT %(limit)s
        """,
        {"conflict": conflict_id, "limit": limit},
        _REJECTION_COLUMNS,
    )
    return _with_tickets(frame)


def conflicts(conn: Conn, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame:
    """The sinks' conflicts, newest first, with the Linear ticket each became (empty before the sinks exist)."""
    names = [
        "conflict_id", "reason_code", "agent", "kind", "window_start", "occurrences", "first_source_offset",
        "last_source_offset", "issue_url", "state", "updated_at",
    ]  # fmt: skip
    if not has_table(conn, "sink_conflicts"):
        return pd.DataFrame(columns=names)
    return _frame(
        conn,
        """
        SELECT c.conflict_id, c.reason_code, c.agent, c.kind, c.window_start, c.occurrences,
               c.first_source_offset, c.last_source_offset, c.issue_url,
               CASE WHEN c.issue_url IS NOT NULL OR d.state = 'delivered' THEN 'filed'
                    WHEN d.offline THEN 'in the outbox (sink offline)'
                    WHEN d.state = 'pending' THEN 'pending'
                    ELSE 'not planned yet' END AS state,
               c.updated_at
        FROM sink_conflicts c
        LEFT JOIN sink_deliveries d ON d.delivery_id = 'linear:issue:' || c.conflict_id
        ORDER BY c.updated_at DESC LIMIT %(limit)s
        """,
        {"limit": limit},
        names,
    )


def ticket_label(issue_url: object, delivery_state: object) -> str:
    """``ENG-12`` for a filed issue, else where its delivery stands (pandas may hand in NaN for NULL)."""
    if isinstance(issue_url, str) and issue_url:
        match = LINEAR_IDENTIFIER.search(issue_url)
        return match[1] if match else issue_url
    if delivery_state == "pending":
        return "pending"
    return "filed" if isinstance(delivery_state, str) else "—"


# --- ledger explorer ---------------------------------------------------------------------------------

_ENTRY_COLUMNS = f"{LEDGER_COLUMNS}, recorded_at"


def _entry(conn: Conn, where: str, params: dict[str, Any]) -> dict[str, Any] | None:
    row = _one(conn, f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE {where}", params)
    if row is None:
        return None
    row["hash"], row["prev_hash"] = bytes(row["hash"]).hex(), bytes(row["prev_hash"]).hex()
    row["proposal"] = orjson.loads(row.pop("proposal_json"))
    row["effects"] = orjson.loads(row.pop("effects_json"))
    row["postings"] = _frame(
        conn,
        "SELECT idx, account, resource, amount FROM postings WHERE seq = %(seq)s ORDER BY idx",
        {"seq": row["seq"]},
        ["idx", "account", "resource", "amount"],
    )
    return row


def entry_by_seq(conn: Conn, seq: int) -> dict[str, Any] | None:
    return _entry(conn, "seq = %(v)s", {"v": seq})


def entry_by_proposal(conn: Conn, proposal_id: str) -> dict[str, Any] | None:
    return _entry(conn, "proposal_id = %(v)s", {"v": proposal_id})


def entry_by_offset(conn: Conn, offset: int) -> dict[str, Any] | None:
    return _entry(conn, "source_offset = %(v)s", {"v": offset})


def rejection(conn: Conn, proposal_id: str | None = None, offset: int | None = None) -> dict[str, Any] | None:
    """One rejection by source offset (its key) or by proposal id (unindexed: the newest match)."""
    if offset is not None:
        row = _one(conn, "SELECT * FROM rejections WHERE source_offset = %(v)s", {"v": offset})
    else:
        row = _one(
            conn,
            "SELECT * FROM rejections WHERE proposal_id = %(v)s ORDER BY source_offset DESC LIMIT 1",
            {"v": proposal_id},
        )
    if row is not None and row["provenance_json"]:
        row["provenance"] = orjson.loads(row["provenance_json"])
    return row


def entries_of_agent(conn: Conn, agent: str, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame:
    return _frame(
        conn,
        "SELECT seq, tick, kind, proposal_id, policy_version, recorded_at FROM ledger "
        "WHERE agent = %(agent)s ORDER BY seq DESC LIMIT %(limit)s",
        {"agent": agent, "limit": limit},
        ["seq", "tick", "kind", "proposal_id", "policy_version", "recorded_at"],
    )


# --- governance --------------------------------------------------------------------------------------


def governance_history(conn: Conn, limit: int = 20) -> pd.DataFrame:
    """Accepted and rejected governance commands, newest first (operators sign them: the agent index finds them)."""
    return _frame(
        conn,
        """
        SELECT * FROM (
            SELECT source_offset, recorded_at, proposal_id, agent, kind, 'accepted' AS outcome,
                   seq::text AS detail, effects_json AS body
            FROM ledger WHERE agent = ANY(%(ops)s) AND kind = ANY(%(kinds)s)
            ORDER BY seq DESC LIMIT %(limit)s) a
        UNION ALL
        SELECT * FROM (
            SELECT source_offset, recorded_at, proposal_id, agent, kind, 'rejected: ' || reason_code, detail, NULL
            FROM rejections WHERE agent = ANY(%(ops)s) AND kind = ANY(%(kinds)s)
            ORDER BY source_offset DESC LIMIT %(limit)s) r
        ORDER BY source_offset DESC LIMIT %(limit)s
        """,
        {"ops": operators(conn), "kinds": sorted(GOVERNANCE_KINDS), "limit": limit},
        ["source_offset", "recorded_at", "proposal_id", "agent", "kind", "outcome", "detail", "body"],
    )


def outcome(conn: Conn, proposal_id: str, agent: str) -> str | None:
    """'accepted as seq N', 'rejected: REASON — detail', or None while the validator has not decided it."""
    entry = _one(conn, "SELECT seq FROM ledger WHERE proposal_id = %(p)s", {"p": proposal_id})
    if entry is not None:
        return f"accepted as seq {entry['seq']}"
    rejected = _one(
        conn,
        "SELECT reason_code, detail FROM rejections WHERE agent = %(a)s AND proposal_id = %(p)s LIMIT 1",
        {"a": agent, "p": proposal_id},
    )
    return None if rejected is None else f"rejected: {rejected['reason_code']} — {rejected['detail']}"


# --- replay and anomalies ----------------------------------------------------------------------------


def replay_runs(conn: Conn, limit: int = 20) -> pd.DataFrame | None:
    """The newest rehydrate/replay runs (None before 0010_recovery.sql is applied)."""
    if not has_table(conn, "replay_runs"):
        return None
    return _frame(
        conn,
        """
        SELECT run_id, kind, started_at, finished_at, extract(epoch FROM finished_at - started_at) AS duration_s,
               entries, entries_per_s, anomalies, ok
        FROM replay_runs ORDER BY started_at DESC LIMIT %(limit)s
        """,
        {"limit": limit},
        ["run_id", "kind", "started_at", "finished_at", "duration_s", "entries", "entries_per_s", "anomalies", "ok"],
    )


def replay_anomalies(conn: Conn, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame | None:
    """The newest anomalies any run found (None before 0010_recovery.sql is applied)."""
    if not has_table(conn, "replay_anomalies"):
        return None
    return _frame(
        conn,
        "SELECT id, run_id, seq, reason, detail, recorded_at FROM replay_anomalies "
        "ORDER BY recorded_at DESC, id DESC LIMIT %(limit)s",
        {"limit": limit},
        ["id", "run_id", "seq", "reason", "detail", "recorded_at"],
    )


# --- the market: the order book and escrow (what traded per tick: readmodel.ticks) ---------------


def order_book(conn: Conn, limit: int = ROWS_SHOWN_MAX) -> pd.DataFrame:
    """Columns resource, side, price, quantity, agent, open_until_tick, order_id: the resting orders,
    best first on each side (bids highest, asks lowest; then the earliest)."""
    return _frame(
        conn,
        "SELECT resource, side, price, quantity, agent, open_until_tick, order_id FROM open_orders "
        "ORDER BY resource, side, CASE side WHEN 'bid' THEN -price ELSE price END, arrival LIMIT %(n)s",
        {"n": limit},
        ["resource", "side", "price", "quantity", "agent", "open_until_tick", "order_id"],
    )


def balances_with_escrow(conn: Conn) -> pd.DataFrame:
    """Columns participant, resource, available, reserved: each account's balance (what it may spend)
    and what its resting orders hold in system:escrow (a bid's credits, an ask's resource)."""
    return _frame(
        conn,
        f"""
        WITH owners AS ({_OWNERS}),
        reserved AS (
            SELECT account, CASE side WHEN 'bid' THEN 'credits' ELSE resource END AS resource,
                   sum(reserved)::bigint AS reserved
            FROM open_orders GROUP BY 1, 2
        )
        SELECT coalesce(o.agent, w.account) AS participant, w.resource, w.balance AS available,
               coalesce(r.reserved, 0) AS reserved
        FROM world_state w LEFT JOIN owners o ON o.account = w.account
        LEFT JOIN reserved r ON r.account = w.account AND r.resource = w.resource
        WHERE w.account NOT LIKE 'system:%%'
        ORDER BY participant, w.resource
        """,
        None,
        ["participant", "resource", "available", "reserved"],
    )
