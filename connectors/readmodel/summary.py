"""What a simulation's summary reads from the ledger tables once the run is decided: the head, the
decisions by kind and reason, trades, balances, unmet demand, the breaker's history, and the
rejections of the offsets asked about."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    seq: int
    tick: int
    opened: bool
    by: str
    reason: str


@dataclass(frozen=True)
class LedgerFigures:
    head_seq: int
    head_hash: str
    accepted_by_kind: dict[str, int]
    rejected_by_reason: dict[str, int]
    trades: dict[str, tuple[int, int, int]]  # resource -> (trades, units, millicredits)
    still_open_offers: int
    balances: dict[str, dict[str, int]]  # agent -> resource -> units
    shortfall_total: dict[str, dict[str, int]]  # agent -> resource -> units unmet over the run
    critical: list[str]
    breaker: list[BreakerEvent]
    rejection_reasons: dict[int, str]  # source offset -> reason code, for the offsets asked about


def read_figures(database_url: str, offsets: list[int]) -> LedgerFigures:
    """The ledger's figures, and the reason codes of whichever of ``offsets`` were rejected."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        assert head is not None, "the genesis entry was checked when it was decided"
        owner = _owners(conn)
        return LedgerFigures(
            head_seq=head[0],
            head_hash=bytes(head[1]).hex(),
            accepted_by_kind=dict(_rows(conn, "SELECT kind, count(*) FROM ledger GROUP BY kind ORDER BY kind")),
            rejected_by_reason=dict(
                _rows(conn, "SELECT reason_code, count(*) FROM rejections GROUP BY 1 ORDER BY 2 DESC, 1")
            ),
            trades=_trades(conn),
            still_open_offers=_rows(conn, "SELECT count(*) FROM open_offers")[0][0],
            balances=_balances(conn, owner),
            shortfall_total=_shortfall_total(conn, owner),
            critical=[a for (a,) in _rows(conn, "SELECT agent FROM participants WHERE critical_load ORDER BY agent")],
            breaker=_breaker(conn),
            rejection_reasons=dict(
                _rows(conn, "SELECT source_offset, reason_code FROM rejections WHERE source_offset = ANY(%s)", offsets)
            ),
        )


def _rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _owners(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """account -> the agent that holds it."""
    return {a: agent for agent, accounts in _rows(conn, "SELECT agent, accounts FROM participants") for a in accounts}


def _balances(conn: psycopg.Connection[Any], owner: dict[str, str]) -> dict[str, dict[str, int]]:
    balances: dict[str, dict[str, int]] = {}
    for account, resource, balance in _rows(conn, "SELECT account, resource, balance FROM world_state ORDER BY 1, 2"):
        if account in owner:
            balances.setdefault(owner[account], {})[resource] = balance
    return balances


def _trades(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int, int]]:
    # An accept's postings are, in order: seller -units, buyer +units, buyer -price, seller +price.
    rows = _rows(
        conn,
        "SELECT good.resource, count(*), sum(good.amount), sum(paid.amount) FROM ledger l "
        "JOIN postings good ON good.seq = l.seq AND good.idx = 1 "
        "JOIN postings paid ON paid.seq = l.seq AND paid.idx = 3 "
        "WHERE l.kind = 'accept' GROUP BY good.resource ORDER BY good.resource",
    )
    return {r: (int(n), int(units), int(paid)) for r, n, units, paid in rows}


def _effects(conn: psycopg.Connection[Any], kinds: tuple[str, ...]) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(seq, tick, agent, effect) of every effect of entries of ``kinds``, in ledger order."""
    rows = _rows(
        conn, "SELECT seq, tick, agent, effects_json FROM ledger WHERE kind = ANY(%s) ORDER BY seq", list(kinds)
    )
    return [(seq, tick, agent, e) for seq, tick, agent, effects in rows for e in orjson.loads(effects)]


def _shortfall_total(conn: psycopg.Connection[Any], owner: dict[str, str]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for _, _, _, effect in _effects(conn, ("meter",)):
        if effect["t"] == "shortfall":
            for account, resource, units in effect["units"]:
                total.setdefault(owner[account], Counter())[resource] += units
    return {agent: dict(sorted(units.items())) for agent, units in sorted(total.items())}


def _breaker(conn: psycopg.Connection[Any]) -> list[BreakerEvent]:
    return [
        BreakerEvent(seq, tick, e["open"], e["by"], e["reason"])
        for seq, tick, _, e in _effects(conn, ("meter", "breaker_trip", "breaker_resume"))
        if e["t"] == "breaker"
    ]
