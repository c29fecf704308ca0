"""Market: the order book now, what each participant holds available and in escrow, and what traded
per grid tick (volume and average price), from the offers and the book alike."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from dashboard import charts, fmt, sources, ui

WINDOW_TICKS = 240


def book() -> None:
    orders = sources.fetch(queries.order_book)
    if orders.empty:
        ui.empty("No resting orders: the book is empty (orders close when filled, cancelled, expired or tripped).")
        return
    # plain cells (a dataframe renders text, never markdown): agent names and ids stay inert
    ui.table(orders.rename(columns={"price": "limit (mc per 1000 units)", "open_until_tick": "open until tick"}))


def escrow() -> None:
    held = sources.fetch(queries.balances_with_escrow)
    reserved = held[held["reserved"] > 0]
    if reserved.empty:
        st.caption("Nothing is held in escrow: every balance shown is available.")
        return
    ui.table(reserved)


def trades(resource: str) -> None:
    per_tick = sources.fetch(ticks.trades_per_tick, WINDOW_TICKS)
    per_tick = per_tick[per_tick["resource"] == resource]
    if per_tick.empty:
        ui.empty(f"No {resource} traded in the last {WINDOW_TICKS:,} ticks.")
        return
    unit = fmt.DISPLAY_UNITS[resource]
    left, right = st.columns(2)
    with left:
        volume = charts.with_wall_time(per_tick).assign(
            volume=per_tick["volume"].map(lambda v: fmt.display_value(resource, v))
        )
        fig = px.bar(
            volume,
            x="tick",
            y="volume",
            hover_data=["wall_time", "trades"],
            title=f"{resource.capitalize()} traded per tick ({unit.symbol})",
            labels=charts.TICK_LABELS,
        )
        ui.plot(charts.on_tick_axis(fig, per_tick["tick"]))
    with right:
        ui.plot(charts.prices(per_tick, f"{resource.capitalize()} price per tick (average of its trades)"))


def live_market(resource: str) -> None:
    st.subheader("Order book")
    book()
    st.subheader("Escrow")
    escrow()
    st.subheader("Trades")
    trades(resource)


st.title("Market")
chosen = st.selectbox("Resource", ("energy", "water"), key="market_resource")
ui.live(lambda: live_market(chosen))()
