"""Overview: throughput and lag, accepted vs rejected, the breaker and its telemetry, policy, ledger head."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from connectors.readmodel.ledger import audit_database, grid_status
from core.text import markdown_literal as md
from dashboard import charts, fmt, sources, ui
from law.policy import DEFAULT_POLICY

THROUGHPUT_WINDOW_S = 60
DECISION_TICKS = 48
METER_POINTS_MAX = 200
VERIFICATION_KEY = "overview_verification"


def activity() -> None:
    totals = sources.fetch(queries.totals)
    rates = sources.fetch(queries.decisions_per_s, THROUGHPUT_WINDOW_S)
    lag = sources.consumer_lag()
    decided = totals["accepted"] + totals["rejected"]
    cols = st.columns(5)
    cols[0].metric("Entries per second", fmt.rate(rates["accepted"]), help="accepted, over the last 60 s")
    cols[1].metric("Rejections per second", fmt.rate(rates["rejected"]), help="over the last 60 s")
    cols[2].metric(
        "Consumer lag", "n/a" if lag is None else f"{lag:,} proposals", help="topic high watermark − validator position"
    )
    cols[3].metric("Accepted (all time)", f"{totals['accepted']:,} entries")
    share = f"{totals['rejected'] / decided:.1%} of decisions" if decided else None
    cols[4].metric("Rejected (all time)", f"{totals['rejected']:,}", share, delta_color="off", delta_arrow="off")
    if not decided:
        ui.empty("No decisions yet: start the validator (`gridgov validator`) and send proposals.")
        return
    decisions_chart()


def decisions_chart() -> None:
    frame = sources.fetch(ticks.decisions_per_tick, DECISION_TICKS)
    if frame.empty:
        st.caption("No decisions yet.")
        return
    ui.plot(charts.decisions(frame, f"Accepted vs rejected per grid tick, last {DECISION_TICKS} ticks"), height_px=260)


def breaker() -> None:
    status = sources.fetch(grid_status)
    if status is None:
        ui.empty("No grid status yet: the validator writes it with its first ledger entry.")
        return
    if status["breaker_open"]:
        reason = md(status["breaker_reason"])
        st.error(f"**Circuit breaker OPEN**: {reason}. Trades are refused.", icon=":material/block:")
    else:
        st.success("**Circuit breaker closed**: trading allowed.", icon=":material/check_circle:")
    telemetry_metrics(status["telemetry"], status["policy"])
    telemetry_charts(status["policy"])


def telemetry_metrics(t: dict[str, int], policy: dict[str, int]) -> None:
    reserve_min, critical_max = policy["breaker_reserve_min_permille"], policy["breaker_critical_shortfall_max"]
    cols = st.columns(4)
    cols[0].metric("Energy reserve", fmt.energy(t["energy_reserve"]))
    cols[1].metric("Energy demand (last tick)", fmt.energy(t["energy_demand"]))
    cols[2].metric(
        "Reserve / demand",
        f"{t['reserve_permille']:,} ‰",
        f"{t['reserve_permille'] - reserve_min:+,} ‰ vs trip at {reserve_min:,} ‰" if reserve_min else "trip off",
        delta_color="normal" if reserve_min else "off",
        delta_arrow="auto" if reserve_min else "off",
    )
    cols[3].metric(
        "Unmet critical load",
        fmt.energy(t["critical_shortfall"]),
        f"trips above {fmt.energy(critical_max)}" if critical_max >= 0 else "trip off",
        delta_color="off",
        delta_arrow="off",
    )


def telemetry_charts(policy: dict[str, int]) -> None:
    history = sources.fetch(queries.meter_history, METER_POINTS_MAX)
    if history.empty:
        st.caption("No meter readings yet: telemetry starts with the meter's first entry.")
        return
    history = charts.with_wall_time(history)
    left, right = st.columns(2)
    with left:
        fig = px.line(
            history,
            x="tick",
            y="reserve_permille",
            markers=True,
            hover_data=["wall_time"],
            title="Reserve / demand per tick (‰)",
            labels=charts.TICK_LABELS,
        )
        if policy["breaker_reserve_min_permille"]:
            fig.add_hline(policy["breaker_reserve_min_permille"], line_dash="dot", annotation_text="trip below")
        fig.update_layout(yaxis_title="‰ of demand")
        ui.plot(charts.on_tick_axis(fig, history["tick"]), height_px=240)
    with right:
        unmet = history.melt(
            id_vars=["tick", "wall_time"], value_vars=["total_shortfall", "critical_shortfall"], var_name="load"
        )
        unmet["load"] = unmet["load"].map({"total_shortfall": "all load", "critical_shortfall": "critical load"})
        fig = px.line(
            unmet,
            x="tick",
            y="value",
            color="load",
            markers=True,
            hover_data=["wall_time"],
            title="Unmet demand per tick (Wh)",
            labels=charts.TICK_LABELS,
        )
        fig.update_layout(yaxis_title="Wh", yaxis_tickformat="~s")
        ui.plot(charts.on_tick_axis(fig, history["tick"]), height_px=240)


def policy() -> None:
    status = sources.fetch(grid_status)
    params = status["policy"] if status else DEFAULT_POLICY
    st.metric("Policy version", f"v{status['policy_version'] if status else 0}")
    rows = [
        {
            "parameter": name,
            "value": f"{value:,}",
            "unit": fmt.POLICY_UNITS.get(name, ("", ""))[0],
            "default": f"{DEFAULT_POLICY.get(name, value):,}",
            "note": fmt.POLICY_UNITS.get(name, ("", ""))[1],
            "changed": "●" if value != DEFAULT_POLICY.get(name) else "",
        }
        for name, value in sorted(params.items())
    ]
    ui.table(
        pd.DataFrame(rows),
        height=35 * (len(rows) + 1) + 3,  # every parameter at once, no inner scrolling
        column_config={
            "parameter": st.column_config.TextColumn(width="medium"),
            "value": st.column_config.TextColumn(width="medium"),
            "unit": st.column_config.TextColumn(width="medium"),
            "default": st.column_config.TextColumn(width="medium"),
            "note": st.column_config.TextColumn(width="medium"),
            "changed": st.column_config.TextColumn("≠ default", width="small"),
        },
    )


def head() -> None:
    found = sources.fetch(queries.ledger_head)
    if found is None:
        ui.empty("The ledger is empty: it starts with the genesis entry.")
        return
    cols = st.columns([1, 1, 4])
    cols[0].metric("Head seq", f"{found['seq']:,}")
    cols[1].metric("Last entry at", found["recorded_at"].strftime("%H:%M:%S"))
    with cols[2]:
        st.caption("Head hash (SHA-256)")
        st.code(found["hash"], language=None)


def verification() -> None:
    if st.button("Verify ledger", key="verify", help="Walk the hash chain and recompute the fold (read-only)"):
        with st.spinner("Verifying the hash chain…"):
            st.session_state[VERIFICATION_KEY] = run_verification()
    result: dict[str, Any] | None = st.session_state.get(VERIFICATION_KEY)
    if result is None:
        st.caption("Not verified yet.")
    elif result["ok"]:
        st.success(
            f"Verified {result['entries']:,} entries up to seq {result['head_seq']:,}: chain, conservation, offsets "
            f"and world_state agree ({result['seconds']:.1f} s, at {result['at']:%H:%M:%S}).",
            icon=":material/lock:",
        )
    else:
        st.error(f"{len(result['problems'])} problems found at {result['at']:%H:%M:%S}.", icon=":material/warning:")
        ui.table(pd.DataFrame(result["problems"], columns=["where", "reason", "detail"]))


def run_verification() -> dict[str, Any]:
    started = time.perf_counter()
    report = audit_database(sources.current_target().url)
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "problems": [(p.where, p.reason, p.detail) for p in report.problems],
        "seconds": time.perf_counter() - started,
        "at": datetime.now(),
    }


st.title("Overview")
ui.live(activity)()
st.subheader("Circuit breaker")
ui.live(breaker)()
st.subheader("Ledger head")
ui.live(head)()
ui.guarded(verification)
st.subheader("Policy")
ui.live(policy)()
