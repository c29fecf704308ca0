"""What one participant may read of the grid: its own balances, the market, its recent refusals.

Read in one REPEATABLE READ snapshot, so a view never mixes two batches of the validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

CONNECT_TIMEOUT_S = 10
OFFER_COLUMNS = "offer_id, seller, account, resource, quantity, price, open_until_tick, to_agent, turn"
ORDER_COLUMNS = "order_id, side, resource, quantity, price, open_until_tick"


@dataclass(frozen=True, slots=True)
class GridSnapshot:
    """The rows an agent's view is built from, as stored."""

    tick: int
    breaker_open: bool
    policy: dict[str, int]
    telemetry: dict[str, int]
    shortfall: list[list[Any]]  # [account, resource, units] of the last meter entry
    balances: dict[str, int]  # resource -> balance of the agent's account
    offers: list[tuple[Any, ...]]  # OFFER_COLUMNS: the agent's own, then the cheapest of the others
    orders: list[tuple[Any, ...]]  # ORDER_COLUMNS: the agent's own resting bids and asks
    quotes: list[tuple[str, int | None, int | None]]  # (resource, best bid, best ask) of the others
    rejections: list[tuple[str, str, str, str]]  # (proposal id, kind, reason, detail), newest first


def read_only_connection(database_url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def grid_tick(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT tick FROM grid_status").fetchone()
    return int(row[0]) if row else -1


def snapshot(
    conn: psycopg.Connection[Any], agent: str, account: str, offers_shown_max: int, rejections_shown_max: int
) -> GridSnapshot:
    with conn.transaction():
        status = conn.execute(
            "SELECT tick, breaker_open, policy_json, telemetry_json, shortfall_json FROM grid_status"
        ).fetchone()
        assert status is not None, "a view is read only after the genesis entry"
        balances = conn.execute(
            "SELECT resource, balance FROM world_state WHERE account = %s ORDER BY resource", (account,)
        ).fetchall()
        own = conn.execute(f"SELECT {OFFER_COLUMNS} FROM open_offers WHERE seller = %s", (agent,)).fetchall()
        others = conn.execute(
            # offers to anyone, and negotiations addressed to this agent
            f"SELECT {OFFER_COLUMNS} FROM open_offers WHERE seller <> %s AND (to_agent IS NULL OR to_agent = %s) "
            "ORDER BY price::numeric / quantity, offer_id LIMIT %s",
            (agent, agent, offers_shown_max),
        ).fetchall()
        orders = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM open_orders WHERE agent = %s ORDER BY order_id", (agent,)
        ).fetchall()
        quotes = conn.execute(
            "SELECT resource, max(price) FILTER (WHERE side = 'bid'), min(price) FILTER (WHERE side = 'ask') "
            "FROM open_orders WHERE agent <> %s GROUP BY resource ORDER BY resource",
            (agent,),
        ).fetchall()
        rejections = conn.execute(
            "SELECT coalesce(proposal_id, ''), coalesce(kind, ''), reason_code, detail FROM rejections "
            "WHERE agent = %s ORDER BY source_offset DESC LIMIT %s",
            (agent, rejections_shown_max),
        ).fetchall()
    tick, breaker_open, policy_json, telemetry_json, shortfall_json = status
    return GridSnapshot(
        tick=tick,
        breaker_open=breaker_open,
        policy=orjson.loads(policy_json),
        telemetry=orjson.loads(telemetry_json),
        shortfall=orjson.loads(shortfall_json),
        balances=dict(balances),
        offers=own + others,
        orders=orders,
        quotes=quotes,
        rejections=rejections,
    )
