"""Governance console: change policy parameters, trip or resume the breaker, as a signed-in operator.

Nothing here writes the database: each action is a signed governance command on the proposals topic
(``connectors.governance.send``), and its fate is read back from the ledger once the validator decided it.
"""

from __future__ import annotations

import functools
from datetime import datetime

import pandas as pd
import streamlit as st
from confluent_kafka import KafkaException

from connectors import governance
from connectors.kafka_io import DeliveryError
from connectors.readmodel import dashboard as queries
from connectors.readmodel.ledger import grid_status
from core.text import markdown_literal as md
from dashboard import console, fmt, sources, ui
from law.policy import DEFAULT_POLICY, POLICY_BOUNDS, invalid_param

POLICY_COLUMNS = 3


def status() -> None:
    found = sources.fetch(grid_status)
    if found is None:
        ui.empty("No grid status yet: the console acts once the ledger has its genesis entry.")
        return
    cols = st.columns(3)
    cols[0].metric("Breaker", "OPEN" if found["breaker_open"] else "closed")
    cols[1].metric("Policy version", f"v{found['policy_version']}")
    cols[2].metric("Grid tick", f"{found['tick']:,}")
    if found["breaker_open"]:
        st.error(f"Breaker open: {md(found['breaker_reason'])}", icon=":material/block:")


def login() -> None:
    ended = console.ended_notice()
    if ended is not None:
        st.warning(ended, icon=":material/timer_off:")
    st.caption(console.login_notice())
    with st.form("login"):
        user = st.text_input("Operator", value=sources.settings().dashboard_user)
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Log in"):
            refused = console.sign_in(user, password)
            if refused is None:
                st.rerun()
            st.error(refused, icon=":material/lock:")


def send(body: dict[str, object], what: str) -> None:
    try:
        proposal_id = console.send(body, what)
    except (DeliveryError, KafkaException, OSError, ValueError) as exc:
        st.error(f"Could not send the command: {exc}", icon=":material/error:")
        return
    st.success(f"Signed and sent {what} as proposal `{proposal_id}`.", icon=":material/send:")


def breaker_form(is_open: bool, trip_seq: int) -> None:
    action = "resume" if is_open else "trip"
    with st.form("breaker"):
        st.markdown(f"**{'Resume' if is_open else 'Trip'} the circuit breaker**")
        reason = st.text_input("Reason", max_chars=console.REASON_LENGTH_MAX, key=f"breaker_reason_{action}")
        if st.form_submit_button(f"{action.capitalize()} breaker", type="primary"):
            if not reason.strip():
                st.error("A reason is required: it is recorded in the ledger.")
                return
            body = governance.breaker(action, console.reason_with_author(reason), trip_seq if is_open else None)
            send(body, f"breaker {action}")


def policy_form(current: dict[str, int]) -> None:
    with st.form("policy"):
        st.markdown("**Policy parameters**")
        cols = st.columns(POLICY_COLUMNS)
        wanted = {}
        for i, name in enumerate(sorted(DEFAULT_POLICY)):
            low, high = POLICY_BOUNDS[name]
            unit, note = fmt.POLICY_UNITS.get(name, ("", ""))
            wanted[name] = cols[i % POLICY_COLUMNS].number_input(
                f"{name} ({unit})" if unit else name,
                min_value=low,
                max_value=high,
                value=current.get(name, DEFAULT_POLICY[name]),
                step=1,
                help=f"{note + ' · ' if note else ''}bounds {low:,} … {high:,} · default {DEFAULT_POLICY[name]:,}",
                key=f"policy_{name}",
            )
        reason = st.text_input("Reason", max_chars=console.REASON_LENGTH_MAX, key="policy_reason")
        if st.form_submit_button("Propose policy change", type="primary"):
            submit_policy(current, {k: int(v) for k, v in wanted.items()}, reason)


def submit_policy(current: dict[str, int], wanted: dict[str, int], reason: str) -> None:
    changes = console.changed_params(current, wanted)
    bad = invalid_param(changes)
    if not changes:
        st.warning("No parameter differs from the policy in force.")
    elif bad is not None:
        st.error(bad[1])
    else:
        listed = ", ".join(f"{k}={v:,}" for k, v in sorted(changes.items()))
        send(governance.policy_set(changes, console.reason_with_author(reason)), f"policy change ({listed})")


def sent_commands() -> None:
    sent = console.sent_commands()
    if not sent:
        st.caption("No commands sent from this session yet.")
        return
    rows = [
        {
            "sent": datetime.fromtimestamp(s.at_s).strftime("%H:%M:%S"),
            "command": s.what,
            "proposal": s.proposal_id,
            "outcome": console.fate(s),
        }
        for s in sent
    ]
    ui.table(pd.DataFrame(rows))
    if console.newly_decided([r["proposal"] for r in rows if r["outcome"] != console.WAITING]):
        # The whole page, with fresh data: the breaker and policy forms now show the state the command made.
        sources.forget_cached()
        st.rerun()


def history() -> None:
    found = sources.fetch(queries.governance_history)
    if found.empty:
        st.caption("No governance commands in the ledger yet.")
        return
    ui.table(
        found[["source_offset", "recorded_at", "kind", "agent", "outcome", "proposal_id"]],
        column_config={
            "source_offset": st.column_config.NumberColumn("offset", format="%d"),
            "recorded_at": st.column_config.DatetimeColumn("at", format="HH:mm:ss"),
        },
    )


def actions(user: str) -> None:
    cols = st.columns([4, 1])
    cols[0].caption(f"Signed in as **{user}**: your commands are signed with your own key, and the ledger names you.")
    if cols[1].button("Log out", key="logout"):
        console.sign_out()
        st.rerun()
    grid = sources.fetch(grid_status)
    if grid is None:
        return
    left, right = st.columns([1, 2])
    with left:
        breaker_form(grid["breaker_open"], grid["breaker_trip_seq"])
    with right:
        policy_form(grid["policy"])
    st.subheader("Commands from this session")
    ui.live(sent_commands)()


st.title("Governance console")
ui.live(status)()
signed_in_as = console.signed_in()
if signed_in_as is None:
    with st.columns([2, 3])[0]:
        login()
else:
    ui.guarded(functools.partial(actions, signed_in_as))
st.subheader("Governance in the ledger")
ui.live(history)()
