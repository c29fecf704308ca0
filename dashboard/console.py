"""The governance console's state: who is signed in, and the signed commands this session sent.

Commands go out through ``connectors.governance.send`` (signed as the operator, published to the
proposals topic), the same path as the CLI; the validator decides them like any proposal, so the
console shows each command's fate by looking for its proposal id in the ledger or the rejections.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import streamlit as st

from connectors import governance
from connectors.readmodel import dashboard as queries
from core.config import Settings, revealed
from core.identities import operator_signer
from dashboard import auth, sources

REASON_LENGTH_MAX = 200  # the law allows 280; the rest is for the "via dashboard" suffix
SIGNED_IN_KEY = "console_user"
SENT_KEY = "console_sent"
DECIDED_KEY = "console_decided"
WAITING = "waiting for the validator…"


@dataclass(frozen=True)
class Sent:
    proposal_id: str
    what: str
    at_s: float


@st.cache_resource(show_spinner=False)
def _credentials(_settings: Settings, login: tuple[str, str, str, bool]) -> auth.Credentials:
    """Once per process and login configuration (``login``, the cache key: Streamlit does not hash
    ``_settings``), so a generated development password is made and printed once."""
    found = auth.load_credentials(_settings)
    if found.generated_password is not None:
        print(auth.one_time_notice(found), file=sys.stderr, flush=True)
    return found


def credentials() -> auth.Credentials:
    s = sources.settings()
    login = (s.dashboard_user, revealed(s.dashboard_password_hash) or "", s.mode, s.dashboard_password_one_time)
    return _credentials(s, login)


def signed_in() -> str | None:
    user: str | None = st.session_state.get(SIGNED_IN_KEY)
    return user


def sign_in(user: str, password: str) -> bool:
    if not auth.check_login(credentials(), user, password):
        return False
    st.session_state[SIGNED_IN_KEY] = user.strip()
    return True


def sign_out() -> None:
    st.session_state.pop(SIGNED_IN_KEY, None)


def send(body: dict[str, Any], what: str) -> str:
    """Sign and publish one governance command; remember it so the page can show what became of it."""
    settings = sources.settings()
    signer = operator_signer(settings.home, settings.operator)
    proposal_id = governance.send(settings, body, settings.operator, signer, source="operator")
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
