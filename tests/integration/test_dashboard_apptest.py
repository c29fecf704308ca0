"""Every dashboard page under Streamlit's AppTest, against a real Postgres seeded by a real validator run.

One ledger serves the module: a synthetic workload (trades, offers, hostile input), a Gemini-sourced
transfer, a meter reading that leaves an agent short, and an operator's breaker trip, all decided by
the validator from a real Kafka topic; the real Linear sink (against the Linear stand-in) then files
the conflicts, so the rejections page can show which ticket each became.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from connectors import governance
from connectors.kafka_admin import delete_topics, ensure_topics
from connectors.kafka_io import send_proposals
from connectors.migrate import apply_migrations
from connectors.readmodel import dashboard as queries
from connectors.readmodel import ticks
from core.config import Settings
from core.pg_access import with_role
from core.text import markdown_literal
from dashboard import auth, console, fmt, frames, sources
from law.policy import DEFAULT_POLICY
from schemas.codec import encode
from schemas.envelope import build
from streams.rehydrate import rehydrate
from streams.validator import open_validator
from streams.workload import METER, OPERATOR, Workload
from tests.conftest import grid_settings, own_kafka_env, temporary_database
from tests.standins.linear_server import LinearStandIn
from tests.support.fold import operator_home

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "dashboard" / "app.py")
SECRET = bytes(range(32))
PASSWORD = "correct horse battery staple"
GEMINI_PROPOSAL = "gemini-proof-1"
GEMINI_PROVENANCE = {
    "source": "gemini",
    "model": "gemini-2.5-flash",
    "prompt_tokens": 812,
    "output_tokens": 64,
    "latency_ms": 930,
    "rationale": "Selling surplus solar to a neighbour who is short this tick.",
}
SHORT_AGENT = "agent003"
SHORTFALL_WH = 5_000
APP_TIMEOUT_S = 30
SINK_TIMEOUT_S = 45


@dataclasses.dataclass(frozen=True)
class Seeded:
    settings: Settings
    agents: list[str]
    accepted_ids: list[str]


def signed(
    w: Workload, agent: str, body: dict[str, Any], tick: int, pid: str, provenance: dict[str, Any] | None = None
) -> bytes:
    """Signed with the agent's next nonce in ``w``, so it follows the workload's own messages."""
    return encode(build(agent, body, tick, 10, w.signer(agent), pid, w.next_nonce(agent), provenance))


def order(side: str, agent: str, quantity: int, price: int) -> dict[str, Any]:
    body = {"kind": side, "account": f"{agent}:main", "resource": "energy", "quantity": quantity, "price": price}
    return {**body, "open_until_tick": 5}


def seed_messages(workload: Workload) -> list[bytes]:
    transfer = {
        "kind": "transfer",
        "from_account": "agent001:main",
        "to_account": "agent002:main",
        "resource": "energy",
        "quantity": 1234,
    }
    reading = {"account": f"{SHORT_AGENT}:main", "resource": "energy", "consumed": 10**12 + SHORTFALL_WH}
    return [
        workload.genesis(),
        *(m.raw for m in workload.messages(400)),
        signed(workload, "agent001", transfer, 0, GEMINI_PROPOSAL, GEMINI_PROVENANCE),
        # the book: an ask, a bid that fills part of it at the ask's 150, a bid that rests below it
        signed(workload, "agent001", order("ask", "agent001", 5_000, 150), 0, "ask-1"),
        signed(workload, "agent002", order("bid", "agent002", 2_000, 200), 0, "bid-1"),
        signed(workload, "agent004", order("bid", "agent004", 1_000, 100), 0, "bid-2"),
        signed(workload, METER, {"kind": "meter", "readings": [reading]}, 1, "meter-1", {"source": "meter"}),
        signed(workload, "operator", governance.breaker("trip", "seeded for the dashboard tests"), 1, "trip-1"),
        *(m.raw for m in workload.messages(20)),  # refused while the breaker is open: CIRCUIT_OPEN
    ]


# The session's own __main__: AppTest leaves the app script installed as __main__ after a run, and a
# spawned process (the validator's writer) imports __main__ afresh: it would run the whole dashboard.
SESSION_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def session_main() -> Iterator[None]:
    """The session's __main__ back after each test, for the tests and processes that come after it."""
    yield
    sys.modules["__main__"] = SESSION_MAIN


def decide(settings: Settings) -> None:
    app_main, sys.modules["__main__"] = sys.modules["__main__"], SESSION_MAIN
    try:
        open_validator(settings, SECRET, version="test-law").run(threading.Event(), idle_exit_s=1.0)
    finally:
        sys.modules["__main__"] = app_main


def file_conflicts(settings: Settings, home: Path) -> None:
    """The real Linear sink, once, against the Linear stand-in."""
    with LinearStandIn() as linear:
        env = {
            **os.environ,
            "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "GRID_SINKS_DATABASE_URL": settings.sinks_database_url,
            "GRID_TOPIC_PREFIX": settings.topic_prefix,
            "GRID_HOME": str(home),
            "LINEAR_API_KEY": linear.api_key,
            "LINEAR_TEAM_ID": linear.team_id,
            "GRID_LINEAR_URL": linear.url,
            "GRID_SINK_LINGER_S": "0.2",
            "GRID_SINK_BATCH_AGE_MAX_S": "0.5",
            **own_kafka_env(settings.kafka_bootstrap, "sinks"),
        }
        env.pop("DISCORD_WEBHOOK_URL", None)
        done = subprocess.run(
            [sys.executable, "-m", "gridgov.cli", "sinks", "run", "--once"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=SINK_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]


@pytest.fixture(scope="module")
def seeded(kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with temporary_database(database_url) as url:
        apply_migrations(url)
        settings = grid_settings(kafka_bootstrap, url, prefix)
        ensure_topics(settings)
        workload = Workload(SECRET, agent_count=6, seed=11, run_id="dash")
        send_proposals(settings, seed_messages(workload))
        decide(settings)
        file_conflicts(settings, tmp_path_factory.mktemp("sinks"))
        try:
            yield Seeded(settings, workload.agents, [pid for pid, _ in workload.accepted_ids])
        finally:
            st.cache_resource.clear()  # closes the dashboard's pools before the database is dropped
            delete_topics(settings, prefix)


def start_app(s: Settings, monkeypatch: pytest.MonkeyPatch, password: str | None = PASSWORD, **query: str) -> AppTest:
    """The app on a GRID_HOME whose operator's key is sealed under ``password`` (unsealed: None),
    opened at ``/`` with ``query`` as its query parameters."""
    # the dashboard's one database role: the owner's URL is not given to it
    monkeypatch.setenv("GRID_DASHBOARD_DATABASE_URL", s.reader_database_url)
    monkeypatch.setenv("GRID_DATABASE_URL", with_role(s.database_url, "nobody", None))
    monkeypatch.setenv("GRID_KAFKA_BOOTSTRAP", s.kafka_bootstrap)
    monkeypatch.setenv("GRID_TOPIC_PREFIX", s.topic_prefix)
    # The dashboard holds no root secret; its console signs with the operator's own key.
    monkeypatch.setenv("GRID_KEY_SECRET", "")
    for name, value in own_kafka_env(s.kafka_bootstrap, "dashboard").items():  # read before GRID_HOME moves
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GRID_HOME", str(operator_home(Path(tempfile.mkdtemp()), SECRET, password)))
    monkeypatch.delenv("GRID_ENV", raising=False)
    st.cache_data.clear()
    console.gate.clear()  # each test starts with no failed logins remembered
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT_S)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def app(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    return start_app(seeded.settings, monkeypatch)


def open_page(at: AppTest, page: str, **query: str) -> AppTest:
    at.query_params.update(query)
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("markdown", "caption", "info", "success", "error", "warning", "text") for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> list[Any]:
    return list(at.get("plotly_chart"))


# --- pages ---------------------------------------------------------------------------------------


def test_overview_shows_throughput_breaker_policy_and_head(app: AppTest, seeded: Seeded) -> None:
    shown = metrics(app)
    with psycopg.connect(seeded.settings.database_url) as conn:
        head, rejected = conn.execute("SELECT max(seq), (SELECT count(*) FROM rejections) FROM ledger").fetchone()
    assert shown["Head seq"] == f"{head:,}"
    assert shown["Accepted (all time)"] == f"{head + 1:,} entries"
    assert shown["Rejected (all time)"] == f"{rejected:,}"
    assert shown["Consumer lag"] == "0 proposals"
    assert shown["Entries per second"].endswith("/s") and shown["Entries per second"] != "0.0/s"
    assert shown["Unmet critical load"] == "0 Wh"
    assert shown["Policy version"] == "v1"  # the genesis sets the policy once
    assert "Circuit breaker OPEN" in texts(app) and "seeded for the dashboard tests" in texts(app)
    assert "grid_reader" in texts(app)  # the sidebar names the read-only role
    assert "Not verified yet." in texts(app)
    assert len(charts(app)) >= 3  # decisions, reserve and unmet demand per tick


def test_overview_verifies_the_ledger_on_demand(app: AppTest) -> None:
    app.button(key="verify").click().run()
    assert not app.exception
    assert any("chain, conservation, offsets and world_state agree" in s.value for s in app.success)


def test_market_page_shows_the_fill_per_tick_and_the_book_the_breaker_emptied(app: AppTest) -> None:
    open_page(app, "market")
    assert not app.exception
    # the trip after the orders closed the resting bid and gave its escrow back
    assert any("No resting orders" in i.value for i in app.info)
    assert any("Nothing is held in escrow" in c.value for c in app.caption)
    charts = [c for c in app.get("plotly_chart")]
    assert len(charts) == 2  # volume and price per tick of the one fill


def test_market_queries_report_the_fill_and_the_accepted_offers(seeded: Seeded) -> None:
    with psycopg.connect(seeded.settings.reader_database_url) as conn:
        per_tick = ticks.trades_per_tick(conn, ticks.TICKS_MAX)
        book = queries.order_book(conn)
    energy = per_tick[per_tick["resource"] == "energy"]
    assert book.empty and not energy.empty
    fill = 2_000 * 150 // 1_000  # the bid paid the resting ask's price
    assert energy["paid"].sum() >= fill and energy["volume"].sum() >= 2_000


def test_flows_page_draws_sankey_balances_and_unmet_demand(app: AppTest) -> None:
    open_page(app, "flows")
    figures = [c.proto.spec for c in charts(app)]
    assert len(figures) == 3, texts(app)
    assert '"type":"sankey"' in figures[0].replace(" ", "")
    assert SHORT_AGENT in figures[2]  # the unmet-demand bars name the agent left short
    app.selectbox(key="flows_resource").select("credits").run()
    assert not app.exception


def test_rejections_page_shows_reasons_agents_and_linear_tickets(app: AppTest) -> None:
    open_page(app, "rejections")
    assert len(charts(app)) == 2  # over time, and per agent
    conflicts, latest = (d.value for d in app.dataframe)
    assert conflicts["issue_url"].str.contains("/issue/GRID-").all()
    assert "CIRCUIT_OPEN" in set(conflicts["reason_code"])
    assert latest["issue_url"].notna().any()
    app.radio(key="rejections_by").set_value("agent").run()
    assert not app.exception


def test_ledger_explorer_shows_a_gemini_proposal_with_postings_hashes_and_provenance(
    app: AppTest, seeded: Seeded
) -> None:
    open_page(app, "ledger", q=GEMINI_PROPOSAL)
    shown = metrics(app)
    assert shown["Kind"] == "transfer"
    assert shown["Prompt tokens"] == "812" and shown["Output tokens"] == "64" and shown["Model latency"] == "930 ms"
    assert GEMINI_PROVENANCE["rationale"] in texts(app) and markdown_literal("gemini-2.5-flash") in texts(app)
    postings = app.dataframe[0].value
    assert sorted(postings["quantity"]) == ["-1.23 kWh", "1.23 kWh"]
    with psycopg.connect(seeded.settings.database_url) as conn:
        hash_, prev = conn.execute(
            "SELECT hash, prev_hash FROM ledger WHERE proposal_id = %s", (GEMINI_PROPOSAL,)
        ).fetchone()
    assert [c.value for c in app.code] == [bytes(hash_).hex(), bytes(prev).hex()]


def test_ledger_explorer_finds_by_seq_agent_offset_and_rejection(app: AppTest) -> None:
    open_page(app, "ledger", seq="0")
    assert metrics(app)["Kind"] == "genesis"
    app.query_params.clear()
    open_page(app, "ledger", q="agent004")
    assert "Latest entries of agent004" in [h.value for h in app.subheader]
    app.query_params.clear()
    open_page(app, "ledger", q="trip-1")
    assert metrics(app)["Kind"] == "breaker_trip"
    app.query_params.clear()
    open_page(app, "ledger", q="no-such-thing")
    assert any("No entry, rejection or agent" in w.value for w in app.warning)


def test_older_links_from_linear_issues_still_open_the_explorer(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(seeded.settings.database_url) as conn:
        (offset,) = conn.execute("SELECT min(source_offset) FROM rejections").fetchone()
        conflict, occurrences = conn.execute("SELECT conflict_id, occurrences FROM sink_conflicts LIMIT 1").fetchone()
    app = start_app(seeded.settings, monkeypatch, view="ledger", offset=str(offset))  # /?view=ledger&offset=…
    assert [t.value for t in app.title] == ["Ledger explorer"]
    assert any(h.value.startswith("Rejected: ") for h in app.subheader)
    app = start_app(seeded.settings, monkeypatch, view="ledger", conflict=conflict)
    assert len(app.dataframe[0].value) == occurrences
    assert app.dataframe[0].value["ticket"].str.startswith("GRID-").all()


def test_the_root_address_and_an_unknown_view_land_on_the_overview(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [t.value for t in start_app(seeded.settings, monkeypatch).title] == ["Overview"]
    assert [t.value for t in start_app(seeded.settings, monkeypatch, view="nosuch").title] == ["Overview"]


def test_replay_page_has_empty_states_before_any_run(app: AppTest) -> None:
    open_page(app, "replay")
    assert "No rehydrate or replay run yet" in texts(app)
    assert "No anomalies recorded." in texts(app)


def test_live_page_follows_the_grid_tick_decisions_lag_breaker_prices_and_flows(app: AppTest) -> None:
    open_page(app, "live")
    shown = metrics(app)
    assert shown["Grid tick"] == "1"  # the seeded meter reading moved the clock from the genesis's tick 0
    assert shown["Decisions this tick"] == "22"  # the meter reading, the trip and the 20 refused after it
    assert shown["Consumer lag"] == "0 proposals" and shown["Breaker"] == "OPEN"
    assert "seeded for the dashboard tests" in texts(app)
    assert len(charts(app)) == 3  # decisions per tick, clearing prices, flows
    assert '"type":"sankey"' in charts(app)[2].proto.spec.replace(" ", "")
    app.selectbox(key="live_ticks").select(12).run()
    assert not app.exception and app.query_params["ticks"] == "12"  # the address links to the window shown


def test_decisions_are_counted_in_the_grid_tick_they_were_made_in(seeded: Seeded) -> None:
    with psycopg.connect(seeded.settings.reader_database_url) as conn:
        per_tick = ticks.decisions_per_tick(conn, ticks.TICKS_MAX)
        (meter_offset,) = conn.execute("SELECT source_offset FROM ledger WHERE proposal_id = 'meter-1'").fetchone()
        before = conn.execute(
            "SELECT (SELECT count(*) FROM ledger WHERE source_offset < %(o)s)"
            " + (SELECT count(*) FROM rejections WHERE source_offset < %(o)s)",
            {"o": meter_offset},
        ).fetchone()[0]
        totals = queries.totals(conn)
    counts = per_tick.groupby("tick")["count"].sum()
    assert list(counts.index) == [0, 1] and counts[0] == before  # by offset, not by the tick a proposal claimed
    assert counts.sum() == totals["accepted"] + totals["rejected"]
    assert per_tick["at"].notna().all()  # each tick's wall-clock start, for the hover


def test_every_chart_has_the_grid_tick_on_its_time_axis(app: AppTest) -> None:
    for page in ("overview", "live", "market", "rejections"):
        for chart in charts(open_page(app, page)):
            spec = orjson.loads(chart.proto.spec)
            if spec["data"][0]["type"] in ("bar", "scatter") and spec["data"][0].get("orientation") != "h":
                assert spec["layout"]["xaxis"]["title"]["text"] == "grid tick", (page, spec["layout"]["title"])
                assert "tick started at" in spec["data"][0]["hovertemplate"]


def test_a_rejection_link_opens_that_rejection_on_the_rejections_page(app: AppTest, seeded: Seeded) -> None:
    with psycopg.connect(seeded.settings.database_url) as conn:
        offset, reason = conn.execute("SELECT source_offset, reason_code FROM rejections LIMIT 1").fetchone()
        (conflict,) = conn.execute("SELECT conflict_id FROM sink_conflicts LIMIT 1").fetchone()
    open_page(app, "rejections", offset=str(offset))
    assert f"Rejected: {reason}" in [h.value for h in app.subheader]
    assert len(charts(app)) == 2  # the page itself is still there below it
    app.button(key="rejections_all").click().run()
    assert not any(h.value.startswith("Rejected: ") for h in app.subheader)
    open_page(app, "rejections", conflict=conflict)
    assert f"Rejections in conflict {markdown_literal(conflict)}" in [h.value for h in app.subheader]


def test_a_hostile_conflict_id_in_a_link_is_shown_inert(app: AppTest) -> None:
    hostile = "[click](https://evil.test) <b>x</b>"
    open_page(app, "rejections", conflict=hostile)
    assert any(markdown_literal(hostile) in i.value for i in app.info)


# Each page's empty states on a migrated database with no data (the start of each message).
EMPTY_STATES = {
    "overview": [
        "No decisions yet: start the validator",
        "No grid status yet: the validator writes it",
        "The ledger is empty: it starts with the genesis entry.",
    ],
    "live": ["No grid yet: the live view starts with the genesis entry"],
    "flows": ["The ledger is empty: flows appear once entries are recorded."],
    "rejections": ["No rejections in this window.", "No conflicts filed yet:", "No rejections yet."],
    "ledger": ["Search for a proposal id, an agent or a ledger seq."],
    "governance": ["No grid status yet: the console acts once the ledger has its genesis entry."],
    "replay": ["No rehydrate or replay run yet:"],
}


@pytest.mark.parametrize("page", sorted(EMPTY_STATES))
def test_every_page_has_an_empty_state_before_any_data(
    page: str, kafka_bootstrap: str, fresh_database: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = grid_settings(kafka_bootstrap, fresh_database, topic_prefix)
    try:
        at = open_page(start_app(settings, monkeypatch), page)
        shown = [str(i.value) for i in at.info]
        for expected in EMPTY_STATES[page]:
            assert any(s.startswith(expected) for s in shown), (expected, shown)
        assert not charts(at) and not at.error
    finally:
        st.cache_resource.clear()


def test_replay_page_shows_a_run_and_the_anomalies_it_found(
    kafka_bootstrap: str, fresh_database: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = grid_settings(kafka_bootstrap, fresh_database, topic_prefix)
    ensure_topics(settings)
    workload = Workload(SECRET, agent_count=3, seed=5, run_id="tamper")
    send_proposals(settings, [workload.genesis(), *(m.raw for m in workload.messages(30))])
    decide(settings)
    with psycopg.connect(fresh_database, autocommit=True) as conn:  # a superuser tampering on purpose
        conn.execute("ALTER TABLE postings DISABLE TRIGGER postings_append_only")
        (tampered,) = conn.execute("SELECT min(seq) FROM postings WHERE seq > 0").fetchone()
        conn.execute("UPDATE postings SET amount = amount + 1 WHERE seq = %s AND idx = 0", (tampered,))
    rehydrate(settings, progress=False)
    try:
        at = open_page(start_app(settings, monkeypatch), "replay")
        shown = metrics(at)
        assert shown["Latest run"] == "rehydrate" and int(shown["Anomalies"]) >= 1
        assert len(charts(at)) == 1  # anomalies by reason
        runs, anomalies = (d.value for d in at.dataframe)
        assert not runs["ok"].iloc[0]
        assert {"HASH_MISMATCH", "NOT_CONSERVED"} <= set(anomalies["reason"])
        assert set(anomalies["seq"].dropna()) == {tampered}
    finally:
        st.cache_resource.clear()  # the pool to this database, before the fixture drops it


def test_balance_history_rebuilds_the_ledger_balances(seeded: Seeded) -> None:
    with psycopg.connect(seeded.settings.database_url, autocommit=True) as conn:
        from_seq = queries.seq_window(conn, 100)["first_seq"]
        history = frames.balance_history(
            queries.balances_now(conn, "energy"), queries.balance_changes(conn, "energy", from_seq), 10_000
        )
        assert history["seq"].min() == from_seq - 1 and len(history) > len(seeded.agents)
        for row in history.sample(20, random_state=1).itertuples():
            (expected,) = conn.execute(
                "SELECT sum(amount) FROM postings WHERE account = %s AND resource = 'energy' AND seq <= %s",
                (f"{row.participant}:main", row.seq),
            ).fetchone()
            assert row.balance == expected, row


def test_every_policy_parameter_is_shown_with_its_unit() -> None:
    assert set(fmt.POLICY_UNITS) == set(DEFAULT_POLICY)


def test_console_refuses_a_wrong_password_and_shows_no_actions(app: AppTest) -> None:
    open_page(app, "governance")
    app.text_input[1].input("wrong password")
    app.button[0].click().run()
    assert any("Wrong operator name or password" in e.value for e in app.error)
    assert not [t for t in app.text_input if (t.key or "").startswith("breaker_reason")]


def log_in(at: AppTest, password: str, user: str = OPERATOR) -> AppTest:
    open_page(at, "governance")
    at.text_input[0].set_value(user)
    at.text_input[1].input(password)
    at.button[0].click().run()
    return at


def test_in_production_only_a_sealed_key_logs_in(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    at = start_app(seeded.settings, monkeypatch, password=None)  # the machine's key is not sealed
    monkeypatch.setenv("GRID_ENV", "production")  # start_app clears it; each run reads it afresh
    home = Path(os.environ["GRID_HOME"])
    assert auth.issue_development_password(home, OPERATOR, production=True) is None
    log_in(at, "")
    assert any("Wrong operator name or password" in e.value for e in at.error)
    assert "one-time" not in texts(at)


def test_the_development_one_time_password_logs_in_once(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    at = start_app(seeded.settings, monkeypatch, password=None)
    password = auth.issue_development_password(Path(os.environ["GRID_HOME"]), OPERATOR, production=False)
    assert password is not None
    assert "one-time password for `operator` was printed" in texts(open_page(at, "governance"))
    log_in(at, password)
    assert "Signed in as **operator**" in texts(at)
    at.button(key="logout").click().run()
    log_in(at, password)  # no failure before it: the gate lets it through, the burnt password does not
    assert any("Wrong operator name or password" in e.value for e in at.error)
    assert "has been used" in texts(at)


def test_console_resumes_the_breaker_and_changes_policy_through_signed_commands(app: AppTest, seeded: Seeded) -> None:
    log_in(app, PASSWORD)
    assert not app.exception and "Signed in as **operator**" in texts(app)

    app.text_input(key="breaker_reason_resume").input("reserve restored")
    app.button(key="FormSubmitter:breaker-Resume breaker").click().run()
    assert any("breaker resume" in s.value for s in app.success), texts(app)
    app.number_input(key="policy_carbon_tax_per_kwh").set_value(25)
    app.text_input(key="policy_reason").input("price carbon")
    app.button(key="FormSubmitter:policy-Propose policy change").click().run()
    assert any("carbon_tax_per_kwh=25" in s.value for s in app.success), texts(app)

    decide(seeded.settings)
    with psycopg.connect(seeded.settings.database_url) as conn:
        rows = conn.execute(
            "SELECT kind, proposal_json FROM ledger WHERE kind IN ('breaker_resume', 'policy_set') ORDER BY seq"
        ).fetchall()
        breaker_open, policy = conn.execute("SELECT breaker_open, policy_json FROM grid_status").fetchone()
    assert [k for k, _ in rows] == ["breaker_resume", "policy_set"]
    assert all(orjson.loads(p)["agent"] == OPERATOR for _, p in rows)  # the person who logged in
    assert all('"source":"operator"' in p and "via dashboard, operator" in p for _, p in rows)
    assert not breaker_open and '"carbon_tax_per_kwh":25' in policy
    st.cache_data.clear()
    app.run()
    outcomes = app.dataframe[0].value["outcome"].tolist()
    assert all(o.startswith("accepted as seq") for o in outcomes), outcomes


def test_a_role_that_may_write_the_ledger_is_refused_not_used_read_only(seeded: Seeded) -> None:
    with pytest.raises(sources.StrongerRole, match="refuses to read as postgres"):
        sources.check_reader(seeded.settings.database_url)
    env = {**os.environ, **seeded.settings.as_env(), "GRID_DASHBOARD_DATABASE_URL": seeded.settings.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "gridgov.cli", "dashboard", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "refuses to read as postgres" in done.stderr
    assert "dashboard: http" not in done.stdout  # it never started


def test_without_its_password_the_reader_role_is_a_message_not_a_fallback(seeded: Seeded) -> None:
    without = with_role(seeded.settings.reader_database_url, "grid_reader", None)
    with pytest.raises(sources.SourceError, match=r"cannot read Postgres .* as its read-only role"):
        sources.check_reader(without)


def test_an_unreachable_database_is_a_message_not_a_traceback(seeded: Seeded) -> None:
    with pytest.raises(sources.SourceError, match=r"cannot read Postgres at 127\.0\.0\.1:1"):
        sources.check_reader("postgresql://grid_reader@127.0.0.1:1/grid")


def test_the_dashboard_role_cannot_write(seeded: Seeded) -> None:
    reader = seeded.settings.reader_database_url
    with psycopg.connect(reader, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO relay_position VALUES ('dashboard', 1)")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO relay_position VALUES ('dashboard', 1)")


def test_a_superuser_is_refused_even_before_the_ledger_exists(empty_database: str) -> None:
    with pytest.raises(sources.StrongerRole, match="refuses to read as postgres"):
        sources.check_reader(empty_database)


def test_the_sidebar_links_to_n8n_executions_when_n8n_runs_the_incident_workflows(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_N8N", "1")
    app = start_app(seeded.settings, monkeypatch)
    links = [c.value for c in app.sidebar.caption if "n8n executions" in c.value]
    assert links == [f"Incident workflows: [n8n executions]({seeded.settings.n8n_url}/home/executions)"]
