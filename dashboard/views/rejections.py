"""Rejections: by reason and by agent over time, and the Linear ticket each conflict became."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from dashboard import frames, sources, ui

SPANS_S = {"last 5 minutes": 300, "last hour": 3_600, "last 24 hours": 86_400}
AGENTS_SHOWN = 10
OTHERS = "others"
TICKET_COLUMN = st.column_config.LinkColumn("Linear ticket", display_text=r"/issue/([A-Za-z0-9]+-\d+)")


def controls() -> tuple[int, str]:
    cols = st.columns([2, 3])
    span = cols[0].selectbox("Window", list(SPANS_S), index=1, key="rejections_span")
    by = cols[1].radio("Colour by", ["reason", "agent"], horizontal=True, key="rejections_by")
    return SPANS_S[span], by


def top_agents(frame: pd.DataFrame) -> pd.DataFrame:
    """The busiest agents by name, the rest as one group, so the legend stays readable."""
    busiest = frame.groupby("agent")["count"].sum().nlargest(AGENTS_SHOWN).index
    return frame.assign(agent=frame["agent"].where(frame["agent"].isin(busiest), OTHERS))


def over_time(span_s: int, by: str) -> pd.DataFrame | None:
    bin_s = frames.bin_seconds(span_s)
    frame = sources.fetch(queries.rejections_over_time, span_s, bin_s)
    if frame.empty:
        ui.empty("No rejections in this window.")
        return None
    frame = top_agents(frame)
    column = "reason_code" if by == "reason" else "agent"
    series = frame.groupby(["at", column], as_index=False)["count"].sum()
    fig = px.bar(
        series,
        x="at",
        y="count",
        color=column,
        color_discrete_map=ui.color_map(series[column]),
        title=f"Rejections per {bin_s} s, by {by}",
        labels={"at": "", "count": f"rejections per {bin_s} s", "reason_code": "reason"},
    )
    ui.plot(fig)
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


def live_rejections(span_s: int, by: str) -> None:
    frame = over_time(span_s, by)
    if frame is not None:
        by_agent(frame)
    st.subheader("Conflicts and their Linear tickets")
    conflicts()
    st.subheader("Latest rejections")
    recent()


st.title("Rejections")
chosen = controls()
ui.live(lambda: live_rejections(*chosen))()
