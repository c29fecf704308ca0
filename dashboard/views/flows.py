"""Flows: who sent what to whom (a Sankey), balances over time, and unmet demand."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from dashboard import charts, fmt, frames, sources, ui
from schemas.types import RESOURCES

WINDOWS = {"last 10 ticks": 10, "last 48 ticks": 48, "last 240 ticks": 240}
# Entries read at most, whatever the window: a busy tick can hold many thousands.
ENTRIES_MAX = 10_000
PARTICIPANTS_SHOWN = 8


def controls() -> tuple[str, int, bool, bool]:
    cols = st.columns([2, 2, 3])
    resource = cols[0].selectbox("Resource", RESOURCES, key="flows_resource")
    window = cols[1].selectbox("Window", list(WINDOWS), index=1, key="flows_window")
    system = cols[2].toggle("Include metering, taxes and interest (system accounts)", key="flows_system")
    genesis = cols[2].toggle("Include opening balances (genesis)", key="flows_genesis")
    return resource, WINDOWS[window], system, genesis


def window_caption(starts: pd.DataFrame, from_seq: int, head: dict[str, Any]) -> None:
    first, last = starts.iloc[0], starts.iloc[-1]
    capped = f" (the last {ENTRIES_MAX:,} entries)" if from_seq > first["seq"] else ""
    st.caption(
        f"Ticks {first['tick']:,}–{last['tick']:,} · entries seq {from_seq:,}–{head['seq']:,}{capped} · "
        f"{frames.wall_times(starts['at']).iloc[0]} onwards"
    )


def balances(resource: str, from_seq: int, starts: pd.DataFrame) -> None:
    history = frames.balance_history(
        sources.fetch(queries.balances_now, resource),
        sources.fetch(queries.balance_changes, resource, from_seq),
        ENTRIES_MAX,
    )
    shown = frames.most_active(history, PARTICIPANTS_SHOWN)
    ends = frames.tick_end_changes(history[history["participant"].isin(shown)], starts)
    if ends.empty:
        ui.empty(f"No {resource} balance changed in this window.")
        return
    unit = fmt.DISPLAY_UNITS[resource]
    # Changes, not absolute balances: a move of a few kWh on a balance of 1 TWh would be a flat line.
    fig = px.line(
        charts.with_wall_time(ends).assign(
            change=ends["change"].map(lambda b: fmt.display_value(resource, b)),
            balance=ends["balance"].map(lambda b: fmt.quantity(resource, b)),
        ),
        x="tick",
        y="change",
        color="participant",
        line_shape="hv",
        markers=True,
        hover_data=["wall_time", "balance"],
        title=f"{resource.capitalize()} balance change of the {len(shown)} most active participants ({unit.symbol})",
        labels={**charts.TICK_LABELS, "change": f"change since the window began ({unit.symbol})"},
    )
    fig.update_layout(yaxis_tickformat="~s" if unit.si_prefixes else ",.3~f")
    ui.plot(charts.on_tick_axis(fig, ends["tick"]))


def unmet_demand() -> None:
    now = sources.fetch(queries.shortfall_now)
    if now.empty:
        st.success("No unmet demand after the last meter reading.", icon=":material/check_circle:")
        return
    by_participant = now.groupby(["participant", "resource"], as_index=False)["unmet"].sum()
    fig = px.bar(
        by_participant.sort_values("unmet", ascending=False),
        x="participant",
        y="unmet",
        color="resource",
        title="Unmet demand after the last meter reading (Wh for energy, L for water)",
        labels={"unmet": "unmet demand", "participant": ""},
    )
    fig.update_layout(yaxis_tickformat="~s")
    ui.plot(fig, height_px=260)


def live_flows(resource: str, window_ticks: int, system: bool, genesis: bool) -> None:
    starts = sources.fetch(ticks.tick_starts, window_ticks)
    head = sources.fetch(queries.ledger_head)
    if starts.empty or head is None:
        ui.empty("The ledger is empty: flows appear once entries are recorded.")
        return
    from_seq = max(int(starts["seq"].iloc[0]), head["seq"] - ENTRIES_MAX + 1)
    if not genesis:
        from_seq = max(1, from_seq)  # seq 0 is the genesis
    window_caption(starts, from_seq, head)
    left, right = st.columns(2)
    with left:
        charts.flows_sankey(resource, from_seq, system or genesis, "this window")
    with right:
        balances(resource, from_seq, starts)
    st.subheader("Unmet demand")
    unmet_demand()


st.title("Flows")
chosen = controls()
ui.live(lambda: live_flows(*chosen))()
