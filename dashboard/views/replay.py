"""Replay & anomalies: the latest rehydrate/replay runs and what they found wrong."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from dashboard import sources, ui


def latest_run() -> None:
    runs = sources.fetch(queries.replay_runs)
    if runs is None:
        ui.empty("This database has no replay tables yet: run `gridgov migrate`.")
        return
    if runs.empty:
        ui.empty("No rehydrate or replay run yet: `gridgov rehydrate` records one here.")
        return
    last = runs.iloc[0]
    verdict = {True: "clean", False: "anomalies found"}.get(last["ok"], "running or died")
    cols = st.columns(4)
    cols[0].metric("Latest run", f"{last['kind']}", verdict, delta_color="off", delta_arrow="off")
    cols[1].metric("Entries checked", f"{int(last['entries']):,}")
    speed = last["entries_per_s"]
    cols[2].metric("Speed (entries/s)", "n/a" if pd.isna(speed) else f"{speed:,.0f}")
    cols[3].metric("Anomalies", f"{int(last['anomalies']):,}")
    ui.table(
        runs,
        column_config={
            "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
            "finished_at": st.column_config.DatetimeColumn("finished", format="HH:mm:ss"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.2f"),
            "entries_per_s": st.column_config.NumberColumn("entries/s", format="%.0f"),
            "ok": st.column_config.CheckboxColumn("clean"),
        },
    )


def anomalies() -> None:
    found = sources.fetch(queries.replay_anomalies)
    if found is None:
        return
    if found.empty:
        st.success("No anomalies recorded.", icon=":material/check_circle:")
        return
    counts = found.groupby("reason", as_index=False).size().rename(columns={"size": "count"})
    fig = px.bar(counts, x="reason", y="count", title="Recent anomalies by reason", labels={"count": "anomalies"})
    ui.plot(fig, height_px=240)
    ui.table(
        found,
        column_config={
            "seq": st.column_config.NumberColumn("seq", format="%d"),
            "recorded_at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss"),
        },
    )


st.title("Replay & anomalies")
ui.live(latest_run)()
st.subheader("Anomalies")
ui.live(anomalies)()
