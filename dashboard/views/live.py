"""Live grid: the running grid tick by tick, refreshed in place every few seconds with no reload.

The grid tick and the decisions in it, decisions per tick, the validator's consumer lag, the breaker,
the prices each tick cleared at, and who sent what over the window. ``?ticks=N`` opens it on a window
of N ticks (one of WINDOWS).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from connectors.readmodel.ledger import grid_status
from core.text import markdown_literal as md
from dashboard import charts, fmt, sources, ui
from schemas.types import RESOURCES

WINDOWS = (12, 48, 240)
WINDOW_DEFAULT = 48
FLOW_ENTRIES_MAX = 10_000  # the Sankey reads at most this many entries, however busy the ticks


def controls() -> tuple[int, str]:
    asked = fmt.position(st.query_params.get("ticks"))
    chosen = asked if asked in WINDOWS else WINDOW_DEFAULT
    cols = st.columns([2, 2, 3])
    window = cols[0].selectbox(
        "Window", WINDOWS, index=WINDOWS.index(chosen), format_func=lambda n: f"last {n} ticks", key="live_ticks"
    )
    resource = cols[1].selectbox("Flows of", RESOURCES, key="live_resource")
    st.query_params["ticks"] = str(window)  # the address bar links to what is shown
    return window, resource


def now(window: int) -> None:
    status = sources.fetch(grid_status)
    if status is None:
        ui.empty("No grid yet: the live view starts with the genesis entry (`gridgov simulate` makes one).")
        return
    per_tick = sources.fetch(ticks.decisions_per_tick, window)
    totals = per_tick.groupby("tick")["count"].sum()
    complete = totals[totals.index < status["tick"]]  # the current tick is still filling up
    lag = sources.consumer_lag()
    cols = st.columns(5)
    cols[0].metric("Grid tick", f"{status['tick']:,}", help="the meter's entries move the grid's clock on")
    cols[1].metric("Decisions this tick", f"{int(totals.get(status['tick'], 0)):,}")
    cols[2].metric(
        "Decisions per tick",
        f"{complete.mean():,.1f}" if len(complete) else "n/a",
        help=f"mean over the last {len(complete)} complete ticks",
    )
    cols[3].metric(
        "Consumer lag", "n/a" if lag is None else f"{lag:,} proposals", help="topic high watermark − validator position"
    )
    cols[4].metric("Breaker", "OPEN" if status["breaker_open"] else "closed")
    if status["breaker_open"]:
        st.error(f"Breaker open: {md(status['breaker_reason'])}. Trades are refused.", icon=":material/block:")
    st.caption(f"Updated {datetime.now(UTC):%H:%M:%S} UTC, every {ui.REFRESH_S:g} s.")
    left, right = st.columns(2)
    with left:
        if per_tick.empty:
            ui.empty("No decisions in this window yet.")
        else:
            ui.plot(charts.decisions(per_tick, f"Decisions per tick, last {window} ticks"), height_px=280)
    with right:
        trades = sources.fetch(ticks.trades_per_tick, window)
        if trades.empty:
            ui.empty(f"Nothing traded in the last {window} ticks.")
        else:
            ui.plot(charts.prices(trades, "Clearing price per tick (average price of its trades)"), height_px=280)


def flows(window: int, resource: str) -> None:
    starts = sources.fetch(ticks.tick_starts, window)
    head = sources.fetch(queries.ledger_head)
    if starts.empty or head is None:
        return
    # seq 0, the genesis, hands out the opening balances: not a flow between participants.
    from_seq = max(1, int(starts["seq"].iloc[0]), head["seq"] - FLOW_ENTRIES_MAX + 1)
    charts.flows_sankey(resource, from_seq, False, f"the last {window} ticks")


def live(window: int, resource: str) -> None:
    now(window)
    flows(window, resource)


st.title("Live grid")
chosen = controls()
ui.live(lambda: live(*chosen))()
