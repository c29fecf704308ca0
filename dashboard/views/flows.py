"""Flows: who sent what to whom (a Sankey), balances over time, and unmet demand."""

from __future__ import annotations

from typing import Any

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from connectors.readmodel import dashboard as queries
from dashboard import fmt, frames, sources, ui
from schemas.types import RESOURCES

WINDOWS = {"last 100 entries": 100, "last 1,000 entries": 1_000, "last 10,000 entries": 10_000}
BALANCE_POINTS_MAX = 400
PARTICIPANTS_SHOWN = 8
SYSTEM = "system:"


def controls() -> tuple[str, int, bool, bool]:
    cols = st.columns([2, 2, 3])
    resource = cols[0].selectbox("Resource", RESOURCES, key="flows_resource")
    window = cols[1].selectbox("Window", list(WINDOWS), index=1, key="flows_window")
    system = cols[2].toggle("Include metering, taxes and interest (system accounts)", key="flows_system")
    genesis = cols[2].toggle("Include opening balances (genesis)", key="flows_genesis")
    return resource, WINDOWS[window], system, genesis


def window_caption(window: dict[str, Any]) -> None:
    st.caption(
        f"Entries seq {window['first_seq']:,}–{window['last_seq']:,} · ticks {window['first_tick']:,}–"
        f"{window['last_tick']:,} · {window['first_at']:%H:%M:%S}–{window['last_at']:%H:%M:%S}"
    )


def sankey(resource: str, from_seq: int, system: bool) -> None:
    flows = sources.fetch(queries.flows, resource, from_seq)
    if not system:
        # Metering moves far more than trades (a whole tick's consumption): left out, trades stay visible.
        flows = flows[~flows["source"].str.startswith(SYSTEM) & ~flows["target"].str.startswith(SYSTEM)]
    unit = fmt.DISPLAY_UNITS[resource]
    if flows.empty:
        ui.empty(f"No {resource} moved between participants in this window.")
        return
    shape = frames.sankey(flows.assign(amount=flows["amount"].map(lambda a: fmt.display_value(resource, a))))
    fig = go.Figure(
        go.Sankey(
            valueformat=",.4~s" if unit.si_prefixes else ",.3f",
            valuesuffix=f" {unit.symbol}",
            node={"label": shape.labels, "pad": 12, "thickness": 14},
            link={"source": shape.sources, "target": shape.targets, "value": shape.values},
        )
    )
    fig.update_layout(title=f"{resource.capitalize()} flows: senders → receivers ({unit.symbol})")
    ui.plot(fig, height_px=max(320, 22 * len(shape.labels) // 2))
    if shape.hidden_links:
        st.caption(f"{shape.hidden_links:,} smaller pairs are folded into “others”.")


def balances(resource: str, from_seq: int) -> None:
    history = frames.balance_history(
        sources.fetch(queries.balances_now, resource),
        sources.fetch(queries.balance_changes, resource, from_seq),
        BALANCE_POINTS_MAX,
    )
    if history.empty:
        ui.empty(f"No {resource} balance changed in this window.")
        return
    shown = frames.most_active(history, PARTICIPANTS_SHOWN)
    history = frames.with_change(history[history["participant"].isin(shown)])
    unit = fmt.DISPLAY_UNITS[resource]
    # Changes, not absolute balances: a move of a few kWh on a balance of 1 TWh would be a flat line.
    fig = px.line(
        history.assign(
            change=history["change"].map(lambda b: fmt.display_value(resource, b)),
            balance=history["balance"].map(lambda b: fmt.quantity(resource, b)),
        ),
        x="seq",
        y="change",
        color="participant",
        line_shape="hv",
        hover_data=["tick", "balance"],
        title=f"{resource.capitalize()} balance change of the {len(shown)} most active participants ({unit.symbol})",
        labels={"seq": "ledger seq", "change": f"change since seq {history['seq'].min():,} ({unit.symbol})"},
    )
    fig.update_layout(yaxis_tickformat="~s" if unit.si_prefixes else ",.3~f")
    ui.plot(fig)


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


def live_flows(resource: str, entries: int, system: bool, genesis: bool) -> None:
    window = sources.fetch(queries.seq_window, entries)
    if window is None:
        ui.empty("The ledger is empty: flows appear once entries are recorded.")
        return
    window_caption(window)
    from_seq = window["first_seq"] if genesis else max(1, window["first_seq"])  # seq 0 is the genesis
    left, right = st.columns(2)
    with left:
        sankey(resource, from_seq, system or genesis)
    with right:
        balances(resource, from_seq)
    st.subheader("Unmet demand")
    unmet_demand()


st.title("Flows")
chosen = controls()
ui.live(lambda: live_flows(*chosen))()
