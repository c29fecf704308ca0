"""Ledger explorer: find an entry by proposal id, agent, seq or source offset, and show all it records.

Deep links use query parameters: ``?q=<proposal id|agent|seq>``, ``?seq=N``, ``?offset=N`` (entry or
rejection at that proposals-topic offset), ``?agent=A`` and ``?conflict=<id>`` (older Linear issues link
to these; newer ones link a rejection or a conflict to the rejections page).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from connectors.readmodel import dashboard as queries
from core.text import markdown_literal as md
from dashboard import details, fmt, sources, ui

SEARCH_KEYS = ("q", "seq", "offset", "agent", "conflict")


def search_box() -> None:
    current = next((f"{k}={st.query_params[k]}" for k in SEARCH_KEYS[1:] if k in st.query_params), "")
    text = st.text_input(
        "Search",
        value=st.query_params.get("q", current),
        placeholder="proposal id, agent or seq",
    ).strip()  # no key: a new deep link (a new default value) makes a fresh box showing it
    if text and text != st.query_params.get("q", current):
        st.query_params.clear()
        st.query_params["q"] = text
        st.rerun()


def show_query() -> None:
    params = {k: st.query_params[k] for k in SEARCH_KEYS if k in st.query_params}
    if not params:
        ui.empty("Search for a proposal id, an agent or a ledger seq.")
    elif (seq := fmt.position(params.get("seq"))) is not None:
        show_entry(sources.fetch(queries.entry_by_seq, seq), f"seq {seq}")
    elif (offset := fmt.position(params.get("offset"))) is not None:
        show_offset(offset)
    elif "conflict" in params:
        details.conflict(params["conflict"])
    elif "agent" in params:
        show_agent(params["agent"])
    else:
        show_text(params.get("q", ""))


def show_text(text: str) -> None:
    seq = fmt.position(text)
    if seq is not None:
        show_entry(sources.fetch(queries.entry_by_seq, seq), f"seq {seq}")
        return
    entry = sources.fetch(queries.entry_by_proposal, text)
    if entry is not None:
        show_entry(entry, text)
        return
    rejected = sources.fetch(queries.rejection, text, None)
    if rejected is not None:
        details.rejection(rejected)
        return
    show_agent(text)


def show_offset(offset: int) -> None:
    entry = sources.fetch(queries.entry_by_offset, offset)
    if entry is not None:
        show_entry(entry, f"offset {offset}")
        return
    rejected = sources.fetch(queries.rejection, None, offset)
    if rejected is None:
        ui.empty(f"Nothing decided at proposals offset {offset:,} yet.")
    else:
        details.rejection(rejected)


def show_agent(agent: str) -> None:
    entries = sources.fetch(queries.entries_of_agent, agent)
    if entries.empty:
        st.warning(f"No entry, rejection or agent matches “{md(agent)}”.", icon=":material/search_off:")
        return
    st.subheader(f"Latest entries of {md(agent)}")
    picked = st.dataframe(
        entries,
        width="stretch",
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="ledger_agent_entries",
    )
    rows = picked.selection.rows
    if rows:
        show_entry(sources.fetch(queries.entry_by_seq, int(entries.iloc[rows[0]]["seq"])), "selected")


def show_entry(entry: dict[str, Any] | None, what: str) -> None:
    if entry is None:
        st.warning(f"No ledger entry for {what}.", icon=":material/search_off:")
        return
    st.subheader(f"Entry seq {entry['seq']:,}: {entry['kind']} by {entry['agent']}")
    cols = st.columns(6)
    cols[0].metric("Seq", f"{entry['seq']:,}")
    cols[1].metric("Tick", f"{entry['tick']:,}", help=f"expires after tick {entry['expires_tick']:,}")
    cols[2].metric("Kind", entry["kind"])
    cols[3].metric("Policy version", f"v{entry['policy_version']}")
    cols[4].metric("Validator", entry["validator_version"])
    cols[5].metric("Source offset", f"{entry['source_offset']:,}")
    st.caption(f"Proposal {md(entry['proposal_id'])} · recorded {entry['recorded_at']:%Y-%m-%d %H:%M:%S %Z}")
    hashes(entry)
    postings(entry["postings"])
    details.provenance(entry["proposal"].get("provenance"))
    with st.expander("Proposal and effects (canonical JSON)"):
        st.json({"proposal": entry["proposal"], "effects": entry["effects"]}, expanded=2)
    neighbours(entry["seq"])


def hashes(entry: dict[str, Any]) -> None:
    st.caption("Hash = SHA-256(prev hash ‖ entry)")
    st.code(entry["hash"], language=None)
    st.caption("Prev hash")
    st.code(entry["prev_hash"], language=None)


def postings(frame: pd.DataFrame) -> None:
    if frame.empty:
        st.caption("No postings: this entry moves no resources.")
        return
    ui.table(
        frame.assign(
            direction=frame["amount"].map(lambda a: "credit" if a > 0 else "debit"),
            quantity=[fmt.quantity(r, a) for r, a in zip(frame["resource"], frame["amount"], strict=True)],
        )[["account", "resource", "direction", "quantity", "amount"]],
        column_config={"amount": st.column_config.NumberColumn("amount (stored units)", format="%d")},
    )


def neighbours(seq: int) -> None:
    left, right = st.columns(2)
    if seq > 0 and left.button("← previous entry", key="ledger_previous"):
        st.query_params.clear()
        st.query_params["seq"] = str(seq - 1)
        st.rerun()
    if right.button("next entry →", key="ledger_next"):
        st.query_params.clear()
        st.query_params["seq"] = str(seq + 1)
        st.rerun()


st.title("Ledger explorer")
search_box()
ui.guarded(show_query)
