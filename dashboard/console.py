"""The governance console's state: who is signed in, and the signed commands this session sent.

A person logs in by opening their own sealed operator key (``dashboard.auth``); the opened signer lives
in their browser session only, until they log out or the session's idle or total limit ends it.
Commands go out through ``connectors.governance.send`` (signed as that person, published to the
proposals topic), the same path as the CLI; the validator decides them like any proposal, so the
console shows each command's fate by looking for its proposal id in the ledger or the rejections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from connectors import governance
from connectors.readmodel import dashboard as queries
from core.identities import is_sealed
from dashboard import auth, sources

REASON_LENGTH_MAX = 200  # the law allows 280; the rest is for the "via dashboard" suffix
SESSION_KEY = "console_session"
ENDED_KEY = "console_session_ended"
SENT_KEY = "console_sent"
DECIDED_KEY = "console_decided"
WAITING = "waiting for the validator…"


@dataclass(frozen=True)
class Sent:
    proposal_id: str
    what: str
    at_s: float


@st.cache_resource(show_spinner=False)
def gate() -> auth.LoginGate:
    """One per process: failures and openings are counted across every browser session."""
    return auth.LoginGate()


def one_time() -> auth.OneTimePassword | None:
    s = sources.settings()
    return None if s.production else auth.OneTimePassword(s.home)


def login_notice() -> str:
    """What the login form says about how to log in here."""
    s = sources.settings()
    how = (
        "Log in as your operator with the password your key is sealed under (`gridgov operators add NAME --password`)."
    )
    found = one_time()
    if found is None or is_sealed(s.home, s.dashboard_user):
        return how
    if found.burnt():
        return f"{how} The development one-time password has been used."
    return f"{how} Development mode: a one-time password for `{s.dashboard_user}` was printed by `gridgov dashboard`."


def session() -> auth.Session | None:
    """The signed-in person, or None; a session past its idle or total limit ends here."""
    found: auth.Session | None = st.session_state.get(SESSION_KEY)
    if found is None:
        return None
    s, now_s = sources.settings(), time.monotonic()
    ended = found.expiry(now_s, s.dashboard_idle_timeout_s, s.dashboard_session_max_s)
    if ended is not None:
        sign_out()
        st.session_state[ENDED_KEY] = ended
        return None
    st.session_state[SESSION_KEY] = replace(found, seen_s=now_s)
    return found


def signed_in() -> str | None:
    found = session()
    return None if found is None else found.user


def ended_notice() -> str | None:
    """Why the last session ended, once."""
    found: str | None = st.session_state.pop(ENDED_KEY, None)
    return found


def sign_in(user: str, password: str) -> str | None:
    """Log ``user`` in by opening their key; None on success, else why not."""
    s, user = sources.settings(), user.strip()
    try:
        signer = gate().attempt(
            user, lambda: auth.open_operator_key(s.home, user, password, one_time(), s.dashboard_user)
        )
    except auth.LoginRefused as exc:
        return str(exc)
    now_s = time.monotonic()
    st.session_state[SESSION_KEY] = auth.Session(user, signer, now_s, now_s)
    return None


def sign_out() -> None:
    st.session_state.pop(SESSION_KEY, None)


def send(body: dict[str, Any], what: str) -> str:
    """Sign ``body`` as the signed-in person and publish it; remember it so the page can show its fate."""
    found = session()
    if found is None:
        raise ValueError("the session has ended: log in again")
    ledger_url = sources.current_target().url
    proposal_id = governance.send(sources.settings(), body, found.user, found.signer, "operator", ledger_url)
    st.session_state.setdefault(SENT_KEY, []).insert(0, Sent(proposal_id, what, time.time()))
    return proposal_id


def reason_with_author(reason: str) -> str:
    return f"{reason.strip()} (via dashboard, {signed_in()})"


def sent_commands() -> list[Sent]:
    sent: list[Sent] = st.session_state.get(SENT_KEY, [])
    return sent


def fate(sent: Sent) -> str:
    """What the validator made of a command: accepted, rejected, or still on its way."""
    found = sources.fetch(queries.outcome, sent.proposal_id, sources.settings().operator)
    return found or WAITING


def newly_decided(proposal_ids: list[str]) -> bool:
    """True once per batch of commands that the validator decided since the last call."""
    known: set[str] = st.session_state.setdefault(DECIDED_KEY, set())
    fresh = set(proposal_ids) - known
    known |= fresh
    return bool(fresh)


def changed_params(current: dict[str, int], wanted: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}
