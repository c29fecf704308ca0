"""Rejections: by reason and by agent per grid tick, and the Linear ticket each conflict became.

Deep links (Linear issues and Discord alerts carry them): ``?offset=N`` shows the rejection of the
proposal at that offset, ``?conflict=<id>`` the rejections grouped into that conflict.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from dashboard import charts, details, fmt, sources, ui

WINDOWS = {"last 12 ticks": 12, "last 48 ticks": 48, "last 240 ticks": 240}
AGENTS_SHOWN = 10
OTHERS = "others"
TICKET_COLUMN = st.column_config.LinkColumn("Linear ticket", display_text=r"/issue/([A-Za-z0-9]+-\d+)")


def controls() -> tuple[int, str]:
    cols = st.columns([2, 3])
    window = cols[0].selectbox("Window", list(WINDOWS), index=1, key="rejections_window")
    by = cols[1].radio("Colour by", ["reason", "agent"], horizontal=True, key="rejections_by")
    return WINDOWS[window], by


def linked() -> None:
    """The item a deep link names, above the charts, with a way back to the whole page."""
    offset, conflict = fmt.position(st.query_params.get("offset")), st.query_params.get("conflict")
    if offset is None and conflict is None:
        return
    with st.container(border=True):
        if offset is not None:
            found = sources.fetch(queries.rejection, None, offset)
            if found is None:
                ui.empty(f"No rejection at proposals offset {offset:,}: it was accepted or is not decided yet.")
            else:
                details.rejection(found)
        else:
            details.conflict(str(conflict))
        if st.button("Show all rejections", key="rejections_all"):
            st.query_params.clear()
            st.rerun()


def top_agents(frame: pd.DataFrame) -> pd.DataFrame:
    """The busiest agents by name, the rest as one group, so the legend stays readable."""
    busiest = frame.groupby("agent")["count"].sum().nlargest(AGENTS_SHOWN).index
    return frame.assign(agent=frame["agent"].where(frame["agent"].isin(busiest), OTHERS))


def per_tick(window_ticks: int, by: str) -> pd.DataFrame | None:
    frame = sources.fetch(ticks.rejections_per_tick, window_ticks)
    if frame.empty:
        ui.empty("No rejections in this window.")
        return None
    # A rejected sender's claimed name is untrusted: plotly would render markup in it.
    frame = top_agents(frame).assign(agent=lambda f: f["agent"].map(fmt.plot_text))
    column = "reason_code" if by == "reason" else "agent"
    series = frame.groupby(["tick", "at", column], as_index=False)["count"].sum()
    fig = px.bar(
        charts.with_wall_time(series),
        x="tick",
        y="count",
        color=column,
        color_discrete_map=ui.color_map(series[column]),
        hover_data=["wall_time"],
        title=f"Rejections per grid tick, by {by}",
        labels={**charts.TICK_LABELS, "count": "rejections per tick", "reason_code": "reason"},
    )
    ui.plot(charts.on_tick_axis(fig, series["tick"]))
    return frame


def by_agent(frame: pd.DataFrame) -> None:
    totals = frame.groupby(["agent", "reason_code"], as_index=False)["count"].sum()
    order = totals.groupby("agent")["count"].sum().sort_values().index
    fig = px.bar(
        totals,
        x="count",
        y="agent",
        color="reason_code",
        color_discrete_map=ui.color_map(totals["reason_code"]),
        orientation="h",
        category_orders={"agent": list(order)[::-1]},
        title="Rejections per agent in the window, by reason",
        labels={"count": "rejections", "agent": "", "reason_code": "reason"},
    )
    ui.plot(fig)


def conflicts() -> None:
    found = sources.fetch(queries.conflicts)
    if found.empty:
        ui.empty("No conflicts filed yet: the Linear sink groups rejections into conflicts (`gridgov sinks`).")
        return
    ui.table(
        found[["reason_code", "agent", "kind", "occurrences", "window_start", "issue_url", "state", "updated_at"]],
        column_config={
            "reason_code": "reason",
            "occurrences": st.column_config.NumberColumn("rejections", format="%d"),
            "window_start": st.column_config.DatetimeColumn("window (UTC day)", format="YYYY-MM-DD"),
            "issue_url": TICKET_COLUMN,
            "updated_at": st.column_config.DatetimeColumn("updated", format="HH:mm:ss"),
        },
    )


def recent() -> None:
    found = sources.fetch(queries.recent_rejections)
    if found.empty:
        ui.empty("No rejections yet.")
        return
    ui.table(
        found[
            ["source_offset", "recorded_at", "proposal_id", "agent", "kind", "reason_code", "detail", "issue_url"]
        ].fillna({"issue_url": ""}),  # not filed yet: an empty cell, not the word None
        column_config={
            "source_offset": st.column_config.NumberColumn("offset", format="%d"),
            "recorded_at": st.column_config.DatetimeColumn("at", format="HH:mm:ss"),
            "proposal_id": "proposal",
            "reason_code": "reason",
            "issue_url": TICKET_COLUMN,
        },
    )


def live_rejections(window_ticks: int, by: str) -> None:
    frame = per_tick(window_ticks, by)
    if frame is not None:
        by_agent(frame)
    st.subheader("Conflicts and their Linear tickets")
    conflicts()
    st.subheader("Latest rejections")
    recent()


st.title("Rejections")
ui.guarded(linked)
chosen = controls()
ui.live(lambda: live_rejections(*chosen))()
