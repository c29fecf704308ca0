"""What the ledger explorer and the rejections page both show of one item: a rejection, the rejections
of one conflict, and the provenance an agent gave its proposal.

Producer text is untrusted: it is shown as plain text (``st.text``, dataframe cells) or through
``markdown_literal``, never as markdown of its own.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from connectors.readmodel import dashboard as queries
from core.rows import was_authenticated
from core.text import markdown_literal as md
from dashboard import sources, ui


def rejection(found: dict[str, Any]) -> None:
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


def conflict(conflict_id: str) -> None:
    found = sources.fetch(queries.conflict_rejections, conflict_id)
    if found.empty:
        ui.empty(f"No rejections recorded for conflict {md(conflict_id)} (yet).")  # a link's text: untrusted
        return
    st.subheader(f"Rejections in conflict {md(conflict_id)}")
    ui.table(found[["source_offset", "recorded_at", "proposal_id", "agent", "kind", "reason_code", "detail", "ticket"]])


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
