"""The Grid Governance dashboard: ``gridgov dashboard`` runs it with ``streamlit run``.

Every page reads Postgres through a read-only role and refreshes its live sections in place; the
governance console acts only by publishing signed commands, exactly like the CLI.

Every page has its own address (``/overview``, ``/live``, ``/ledger?seq=42``…), which is what Linear
issues and Discord alerts link to (``sinks.payloads``). Streamlit serves its default page at ``/`` and
at no other path, so the default is a hidden page that forwards to the overview; it also forwards
the older links, ``/?view=ledger&offset=…``, to the page they name.
"""

from __future__ import annotations

import functools

import streamlit as st

from dashboard import console, sources

PAGES = (
    ("overview", "Overview", ":material/monitoring:"),
    ("live", "Live grid", ":material/sensors:"),
    ("flows", "Flows", ":material/swap_horiz:"),
    ("market", "Market", ":material/candlestick_chart:"),
    ("rejections", "Rejections", ":material/block:"),
    ("ledger", "Ledger explorer", ":material/manage_search:"),
    ("governance", "Governance console", ":material/gavel:"),
    ("replay", "Replay & anomalies", ":material/history:"),
)
HOME = "overview"
# Other names a page answers to: the console is the governance page.
ALIASES = {"console": "governance"}


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


def forward(pages: dict[str, st.Page], key: str | None) -> None:
    """Open page ``key`` (the ``view`` parameter when None, else the overview) with the other parameters."""
    params = {k: v for k, v in st.query_params.items() if k != "view"}
    target = key or st.query_params.get("view", HOME)
    st.switch_page(pages.get(target, pages[HOME]), query_params=params)


def main() -> None:
    st.set_page_config(page_title="Grid Governance", page_icon=":material/bolt:", layout="wide")
    pages = {key: st.Page(f"views/{key}.py", title=title, icon=icon, url_path=key) for key, title, icon in PAGES}
    home = functools.partial(forward, pages, None)
    forwards = [
        st.Page(home, title="Grid Governance", url_path="home", default=True, visibility="hidden"),
        *(
            st.Page(functools.partial(forward, pages, key), title=alias, url_path=alias, visibility="hidden")
            for alias, key in ALIASES.items()
        ),
    ]
    page = st.navigation([*forwards, *pages.values()])
    sidebar()
    page.run()


main()
