"""The dashboard in headless Chromium: live metrics while proposals flow, the ledger explorer, an
operator resuming a tripped breaker from the console, with the resume checked in the ledger, and
every page opened by its own address while the grid's tick advances.

Real everything: Kafka, Postgres, a validator deciding in the background, ``streamlit run`` as a
subprocess, and Debian's Chromium driven by Playwright. Screenshots of every page are saved under
artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from connectors import governance
from connectors.kafka_admin import ensure_topics
from connectors.kafka_io import send_proposals
from core.config import Settings
from core.pg_access import with_role
from streams.rehydrate import rehydrate
from streams.validator import open_validator
from streams.workload import METER, OPERATOR, Workload, synthetic_operator
from tests.conftest import grid_settings, own_kafka_env
from tests.integration.test_dashboard_apptest import (
    GEMINI_PROPOSAL,
    GEMINI_PROVENANCE,
    PASSWORD,
    SECRET,
    file_conflicts,
    seed_messages,
    signed,
)
from tests.support.fold import operator_home

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_TIMEOUT_S = 900
START_TIMEOUT_S = 30
WAIT_TIMEOUT_S = 20
POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 10
VIEWPORT = {"width": 1440, "height": 1000}
TICK_INTERVAL_S = 0.5  # how often the background meter moves the grid's clock on
PROPOSALS_PER_TICK = 15
# Every page by its address, with the heading it shows; / and /console forward to a page of their own.
PAGE_HEADINGS = {
    "": "Overview",
    "overview": "Overview",
    "live": "Live grid",
    "flows": "Flows",
    "market": "Market",
    "rejections": "Rejections",
    "ledger": "Ledger explorer",
    "governance": "Governance console",
    "console": "Governance console",
    "replay": "Replay & anomalies",
}
CONTENT_HEIGHT_JS = "() => Math.ceil(document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight + 80)"
IDLE_APP = "[data-testid='stApp'][data-test-script-state='notRunning']"


def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing and allowed; skip only if that is impossible."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(command, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (apt-get install chromium needs root)")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout_s} s: {what}")
        time.sleep(POLL_INTERVAL_S)


@pytest.fixture
def settings(kafka_bootstrap: str, fresh_database: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GRID_KEY_SECRET", SECRET.hex())  # this test trips the breaker as the operator
    s = grid_settings(kafka_bootstrap, fresh_database, topic_prefix)
    ensure_topics(s)
    return s


@pytest.fixture
def validator(settings: Settings) -> Iterator[None]:
    """A validator deciding in the background for the whole test, as in production."""
    stop = threading.Event()
    running = open_validator(settings, SECRET, version="e2e-law")
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(STOP_TIMEOUT_S)


@pytest.fixture
def dashboard(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "GRID_DASHBOARD_DATABASE_URL": settings.reader_database_url,  # its one role: not the owner's URL
        "GRID_DATABASE_URL": with_role(settings.database_url, "nobody", None),
        "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "GRID_TOPIC_PREFIX": settings.topic_prefix,
        "GRID_KEY_SECRET": "",  # the dashboard holds no root secret; the console signs with the operator's key
        "GRID_HOME": str(operator_home(tmp_path / "home", SECRET, PASSWORD)),
        "PYTHONPATH": str(REPO_ROOT),
        **own_kafka_env(settings.kafka_bootstrap, "dashboard"),
    }
    log = tmp_path / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboard" / "app.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), "streamlit /_stcore/health answers ok", START_TIMEOUT_S)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
        print(log.read_text()[-3000:])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1.0).text == "ok"
    except httpx.HTTPError:
        return False


@pytest.fixture
def ticking(settings: Settings, validator: None) -> Iterator[Callable[[], int]]:
    """A grid whose clock the meter moves on every TICK_INTERVAL_S, trades flowing in each tick, for
    the whole test; yields a function that reads the grid's tick from the ledger."""
    workload = Workload(SECRET, agent_count=6, seed=31, run_id="tick")
    send_proposals(settings, [workload.genesis()])
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(TICK_INTERVAL_S):
            workload.tick += 1
            reading = {"account": f"{workload.agents[0]}:main", "resource": "energy", "produced": 100, "consumed": 50}
            body = {"kind": "meter", "readings": [reading]}
            meter = signed(workload, METER, body, workload.tick, f"meter-{workload.tick}")
            send_proposals(settings, [meter, *(m.raw for m in workload.messages(PROPOSALS_PER_TICK))])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield lambda: grid_tick(settings)
    stop.set()
    thread.join(STOP_TIMEOUT_S)


def grid_tick(settings: Settings) -> int:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT tick FROM grid_status").fetchone()
    return int(row[0]) if row else -1


def ledger_has(settings: Settings, where: str, *params: object) -> bool:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(f"SELECT count(*) FROM ledger WHERE {where}", params).fetchone() != (0,)


def breaker_open(settings: Settings) -> bool:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT breaker_open FROM grid_status").fetchone()
    return bool(row and row[0])


def test_live_metrics_explorer_and_resuming_a_tripped_breaker(
    settings: Settings, validator: None, dashboard: str, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    workload = Workload(SECRET, agent_count=6, seed=21, run_id="e2e")
    send_proposals(settings, seed_messages(workload)[:-21])  # everything but the breaker trip and what follows it
    wait_until(lambda: ledger_has(settings, "proposal_id = %s", GEMINI_PROPOSAL), "the seed is decided")
    file_conflicts(settings, tmp_path)
    rehydrate(settings, progress=False)  # one recorded run for the replay page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def open_page(page: Page, path: str) -> None:
        page.goto(f"{dashboard}/{path}")
        page.wait_for_selector(IDLE_APP, timeout=WAIT_TIMEOUT_S * 1000)

    def metric(page: Page, label: str) -> str:
        card = page.get_by_test_id("stMetric").filter(has_text=label).first
        return card.get_by_test_id("stMetricValue").inner_text()

    def shoot(page: Page, name: str) -> None:
        # Streamlit scrolls inside its main container, so a "full page" shot needs a viewport that tall.
        height_px = page.evaluate(CONTENT_HEIGHT_JS)
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height_px, VIEWPORT["height"]), 8000)})
        page.wait_for_timeout(800)  # plotly redraws at the new size
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        page.set_viewport_size(VIEWPORT)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)

        # Overview: the live section refreshes in place while new proposals are decided.
        open_page(page, "")
        expect(page.get_by_test_id("stMetric").filter(has_text="Head seq")).to_be_visible()
        before = metric(page, "Head seq")
        send_proposals(settings, [m.raw for m in workload.messages(300)])
        expect(
            page.get_by_test_id("stMetric").filter(has_text="Head seq").get_by_test_id("stMetricValue")
        ).not_to_have_text(before, timeout=WAIT_TIMEOUT_S * 1000)
        assert page.get_by_test_id("stException").count() == 0
        shoot(page, "overview")

        open_page(page, "flows")
        expect(page.get_by_test_id("stPlotlyChart")).to_have_count(3, timeout=WAIT_TIMEOUT_S * 1000)
        shoot(page, "flows")

        open_page(page, "rejections")
        expect(page.get_by_test_id("stPlotlyChart")).to_have_count(2, timeout=WAIT_TIMEOUT_S * 1000)
        expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
        shoot(page, "rejections")

        # Ledger explorer for a known proposal: its hash, postings and Gemini provenance.
        open_page(page, f"ledger?q={GEMINI_PROPOSAL}")
        expect(page.get_by_text(GEMINI_PROVENANCE["rationale"])).to_be_visible()
        expect(page.get_by_test_id("stMetric").filter(has_text="Prompt tokens")).to_contain_text("812")
        shoot(page, "ledger")

        # An operator trips the breaker (CLI path); the console resumes it.
        governance.send(settings, governance.breaker("trip", "e2e: manual trip"), OPERATOR, synthetic_operator(SECRET))
        wait_until(lambda: breaker_open(settings), "the breaker is open")
        open_page(page, "governance")
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        reason = page.get_by_role("textbox", name="Reason").first
        expect(reason).to_be_visible(timeout=WAIT_TIMEOUT_S * 1000)
        reason.fill("e2e: reserve restored")
        page.get_by_role("button", name="Resume breaker").click()
        wait_until(
            lambda: ledger_has(
                settings, "kind = 'breaker_resume' AND proposal_json LIKE %s", "%e2e: reserve restored%"
            ),
            "the console's resume is in the ledger",
        )
        assert not breaker_open(settings)
        sent = page.get_by_test_id("stDataFrame").first  # "Commands from this session", refreshed in place
        expect(sent).to_contain_text("accepted as seq", timeout=WAIT_TIMEOUT_S * 1000)
        expect(page.get_by_role("button", name="Trip breaker")).to_be_visible(timeout=WAIT_TIMEOUT_S * 1000)
        expect(page.get_by_test_id("stMetric").filter(has_text="Breaker")).to_contain_text("closed")
        shoot(page, "governance")

        open_page(page, "replay")
        shoot(page, "replay")
        browser.close()


def test_every_page_opens_by_its_address_while_the_grid_ticks(
    settings: Settings, ticking: Callable[[], int], dashboard: str
) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    wait_until(lambda: ticking() >= 2, "the grid has ticked twice")

    def open_page(page: Page, path: str) -> None:
        page.goto(f"{dashboard}/{path}")
        page.wait_for_selector(IDLE_APP, timeout=WAIT_TIMEOUT_S * 1000)

    def shown_tick(page: Page) -> int:
        card = page.get_by_test_id("stMetric").filter(has_text="Grid tick").first
        return int(card.get_by_test_id("stMetricValue").inner_text().replace(",", ""))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)

        for path, heading in PAGE_HEADINGS.items():
            open_page(page, path)
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            assert page.get_by_text("Page not found").count() == 0, path
            assert page.get_by_test_id("stException").count() == 0, path
        open_page(page, "")
        expect(page).to_have_url(f"{dashboard}/overview")  # / lands on the overview's own address

        # The live page follows the grid: by itself in place, and again after a reload.
        open_page(page, "live?ticks=12")
        expect(page.get_by_test_id("stMetric").filter(has_text="Grid tick")).to_be_visible()
        first = shown_tick(page)
        wait_until(lambda: shown_tick(page) > first, "the live page shows a later tick without a reload")
        page.reload()
        page.wait_for_selector(IDLE_APP, timeout=WAIT_TIMEOUT_S * 1000)
        expect(page.get_by_test_id("stMetric").filter(has_text="Grid tick")).to_be_visible()
        assert shown_tick(page) > first
        expect(page.get_by_role("combobox", name="Window")).to_have_value("last 12 ticks")  # chosen by ?ticks=12
        expect(page.get_by_test_id("stPlotlyChart").first).to_contain_text("grid tick", timeout=WAIT_TIMEOUT_S * 1000)

        # An item's own address selects it.
        open_page(page, "ledger?seq=1")
        expect(page.get_by_role("heading", name="Entry seq 1:")).to_be_visible()
        browser.close()
