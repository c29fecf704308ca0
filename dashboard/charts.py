"""Charts more than one page draws: decisions, rejections and prices per grid tick, and the flows Sankey.

Every time axis is the grid tick (``connectors.readmodel.ticks``); the wall-clock time a tick started
is in the hover only, since a fast run fits dozens of ticks in one second.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from connectors.readmodel import dashboard as queries
from dashboard import fmt, frames, sources, ui
from law.policy import PRICE_QUOTE_UNITS

OUTCOME_COLORS = {"accepted": "#2e7d32", "rejected": "#c62828"}
TICK_LABELS = {"tick": "grid tick", "wall_time": "tick started at"}
SYSTEM = "system:"
WHOLE_TICK_LABELS_MAX = 20  # ticks in a window below which every tick gets its own label


def on_tick_axis(fig: go.Figure, ticks: pd.Series) -> go.Figure:
    # Whole ticks only: over a short window plotly would otherwise label 44.5, 45, 45.5…
    short = ticks.empty or ticks.max() - ticks.min() <= WHOLE_TICK_LABELS_MAX
    fig.update_xaxes(title="grid tick", tickformat="d", dtick=1 if short else None)
    return fig


def with_wall_time(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(wall_time=frames.wall_times(frame["at"]))


def decisions(frame: pd.DataFrame, title: str) -> go.Figure:
    """Stacked accepted and rejected decisions per tick, from ``ticks.decisions_per_tick``."""
    fig = px.bar(
        with_wall_time(frame),
        x="tick",
        y="count",
        color="outcome",
        color_discrete_map=OUTCOME_COLORS,
        hover_data=["wall_time"],
        title=title,
        labels={**TICK_LABELS, "count": "decisions per tick"},
    )
    return on_tick_axis(fig, frame["tick"])


def prices(trades: pd.DataFrame, title: str) -> go.Figure:
    """The price per tick of each resource (millicredits per PRICE_QUOTE_UNITS), from ``ticks.trades_per_tick``."""
    priced = with_wall_time(trades.assign(price=trades["paid"] * PRICE_QUOTE_UNITS // trades["volume"]))
    fig = px.line(
        priced,
        x="tick",
        y="price",
        color="resource",
        markers=True,
        hover_data=["wall_time", "trades"],
        title=title,
        labels={**TICK_LABELS, "price": f"millicredits per {PRICE_QUOTE_UNITS:,} units"},
    )
    return on_tick_axis(fig, trades["tick"])


def flows_sankey(resource: str, from_seq: int, system: bool, window: str) -> None:
    """Who sent ``resource`` to whom from ``from_seq`` on: senders left, receivers right."""
    flows = _participant_flows(resource, from_seq, system)
    unit = fmt.DISPLAY_UNITS[resource]
    if flows.empty:
        ui.empty(f"No {resource} moved between participants in {window}.")
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
    fig.update_layout(title=f"{resource.capitalize()} flows in {window}: senders → receivers ({unit.symbol})")
    ui.plot(fig, height_px=max(320, 22 * len(shape.labels) // 2))
    if shape.hidden_links:
        st.caption(f"{shape.hidden_links:,} smaller pairs are folded into “others”.")


def _participant_flows(resource: str, from_seq: int, system: bool) -> pd.DataFrame:
    flows = sources.fetch(queries.flows, resource, from_seq)
    if system:
        return flows
    # Metering moves far more than trades (a whole tick's consumption): left out, trades stay visible.
    return flows[~flows["source"].str.startswith(SYSTEM) & ~flows["target"].str.startswith(SYSTEM)]
