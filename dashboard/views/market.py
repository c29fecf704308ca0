"""Market: the order book now, what each participant holds available and in escrow, and what traded
per grid tick (volume and average price), from the offers and the book alike."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from connectors.readmodel import dashboard as queries
from dashboard import fmt, sources, ui
from law.policy import PRICE_QUOTE_UNITS

WINDOW_ENTRIES = 10_000


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
    window = sources.fetch(queries.seq_window, WINDOW_ENTRIES)
    if window is None:
        ui.empty("The ledger is empty.")
        return
    per_tick = sources.fetch(queries.trades_per_tick, window["first_seq"])
    per_tick = per_tick[per_tick["resource"] == resource] if not per_tick.empty else per_tick
    if per_tick.empty:
        ui.empty(f"No {resource} traded in the last {WINDOW_ENTRIES:,} entries.")
        return
    per_tick = per_tick.assign(price=per_tick["paid"] * PRICE_QUOTE_UNITS // per_tick["volume"])
    unit = fmt.DISPLAY_UNITS[resource]
    left, right = st.columns(2)
    with left:
        volume = per_tick.assign(volume=per_tick["volume"].map(lambda v: fmt.display_value(resource, v)))
        ui.plot(px.bar(volume, x="tick", y="volume", title=f"{resource.capitalize()} traded per tick ({unit.symbol})"))
    with right:
        title = f"Average {resource} price per tick (millicredits per 1000 units)"
        ui.plot(px.line(per_tick, x="tick", y="price", markers=True, hover_data=["trades"], title=title))


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
