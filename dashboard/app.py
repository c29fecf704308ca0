"""The Grid Governance dashboard: ``gridgov dashboard`` runs it with ``streamlit run``.

Every page reads Postgres through a read-only role and refreshes its live sections in place; the
governance console acts only by publishing signed commands, exactly like the CLI.
"""

from __future__ import annotations

import streamlit as st

from dashboard import console, sources

PAGES = (
    ("overview", "Overview", ":material/monitoring:"),
    ("flows", "Flows", ":material/swap_horiz:"),
    ("market", "Market", ":material/candlestick_chart:"),
    ("rejections", "Rejections", ":material/block:"),
    ("ledger", "Ledger explorer", ":material/manage_search:"),
    ("governance", "Governance console", ":material/gavel:"),
    ("replay", "Replay & anomalies", ":material/history:"),
)


def sidebar() -> None:
    s = sources.settings()
    try:
        target = sources.current_target()
    except sources.SourceError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    st.sidebar.caption(f"Postgres as **{target.role}** (read-only) · topic `{s.topic('proposals')}`")
    user = console.signed_in()  # a name a key file has: an identifier, safe in markdown
    st.sidebar.caption(f"Console: signed in as **{user}**" if user else "Console: not signed in")
    if s.n8n_enabled:  # the URL is the operator's setting, not producer text
        st.sidebar.caption(f"Incident workflows: [n8n executions]({s.n8n_url}/home/executions)")


def main() -> None:
    st.set_page_config(page_title="Grid Governance", page_icon=":material/bolt:", layout="wide")
    pages = {key: st.Page(f"views/{key}.py", title=title, icon=icon, url_path=key) for key, title, icon in PAGES}
    page = st.navigation(list(pages.values()))
    # Links from Linear issues and alerts open /?view=ledger&offset=…: forward them to that page.
    view = st.query_params.get("view")
    if view in pages and page.url_path != view:
        st.switch_page(pages[view], query_params={k: v for k, v in st.query_params.items() if k != "view"})
    sidebar()
    page.run()


main()
