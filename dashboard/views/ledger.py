"""Ledger explorer: find an entry by proposal id, agent, seq or source offset, and show all it records.

Deep links use query parameters: ``?q=<proposal id|agent|seq>``, ``?seq=N``, ``?offset=N`` (entry or
rejection at that proposals-topic offset), ``?agent=A`` and ``?conflict=<id>`` (as the Linear issues link).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from connectors.readmodel import dashboard as queries
from core.rows import was_authenticated
from core.text import markdown_literal as md
from dashboard import fmt, sources, ui

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
    elif "seq" in params and params["seq"].isdigit():
        show_entry(sources.fetch(queries.entry_by_seq, int(params["seq"])), f"seq {params['seq']}")
    elif "offset" in params and params["offset"].isdigit():
        show_offset(int(params["offset"]))
    elif "conflict" in params:
        show_conflict(params["conflict"])
    elif "agent" in params:
        show_agent(params["agent"])
    else:
        show_text(params.get("q", ""))


def show_text(text: str) -> None:
    if text.isdigit():
        show_entry(sources.fetch(queries.entry_by_seq, int(text)), f"seq {text}")
        return
    entry = sources.fetch(queries.entry_by_proposal, text)
    if entry is not None:
        show_entry(entry, text)
        return
    rejected = sources.fetch(queries.rejection, text, None)
    if rejected is not None:
        show_rejection(rejected)
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
        show_rejection(rejected)


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


def show_conflict(conflict_id: str) -> None:
    found = sources.fetch(queries.conflict_rejections, conflict_id)
    if found.empty:
        ui.empty(f"No rejections recorded for conflict {conflict_id} (yet).")
        return
    st.subheader(f"Rejections in conflict {conflict_id}")
    ui.table(found[["source_offset", "recorded_at", "proposal_id", "agent", "kind", "reason_code", "detail", "ticket"]])


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
    provenance(entry["proposal"].get("provenance"))
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


def provenance(found: dict[str, Any] | None) -> None:
    if not found:
        st.caption("No provenance recorded for this proposal.")
        return
    model = f" · model {md(found['model'])}" if found.get("model") else ""
    st.markdown(f"**Provenance**: {md(found['source'])}{model}")
    if any(k in found for k in ("prompt_tokens", "output_tokens", "latency_ms")):
        cols = st.columns(3)
        cols[0].metric("Prompt tokens", f"{found.get('prompt_tokens', 0):,}")
        cols[1].metric("Output tokens", f"{found.get('output_tokens', 0):,}")
        cols[2].metric("Model latency", f"{found.get('latency_ms', 0):,} ms")
    if found.get("rationale"):  # the model's own words: plain text, never markdown
        st.caption("The agent's rationale, as it wrote it:")
        st.text(found["rationale"])
    if found.get("fallback"):
        st.caption(f"Fallback: {md(found['fallback'])}")


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


def show_rejection(found: dict[str, Any]) -> None:
    st.subheader(f"Rejected: {found['reason_code']}")
    st.warning(md(found["detail"]), icon=":material/block:")
    authenticated = was_authenticated(found["nonce"], found["reason_code"])
    facts = {
        "proposal": found["proposal_id"],
        # What an unauthenticated sender claimed is evidence, not an identity.
        "agent": found["agent"] if authenticated else f"unauthenticated (claimed {found['agent']!r})",
        "kind": found["kind"],
        "field": found["field"],
        "tick": found["tick"],
        "source offset": found["source_offset"],
        "policy version": found["policy_version"],
        "validator": found["validator_version"],
        "recorded": f"{found['recorded_at']:%Y-%m-%d %H:%M:%S %Z}",
    }
    ui.table(pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]}))
    provenance(found.get("provenance"))


st.title("Ledger explorer")
search_box()
ui.guarded(show_query)
