"""The live grid end to end: `gridgov up` runs every service under supervisor against the real broker
and database, each participant a process of its own with its own key file; `status` reports them, a
participant joins and is suspended at runtime, `down` stops what `up` started, and a two-minute
soak keeps memory flat, prints its figures and verifies.

One grid for the module (starting one costs seconds of CPU per process), on a namespace of its own:
a temporary GRID_HOME, database and topic prefix. The tests run in file order and build on each
other: the grid the first one starts is the one the later ones change and stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.process import pid_alive, poll_until
from tests.conftest import _free_port, temporary_database, with_credentials

TICK_S = 0.5
COMMAND_TIMEOUT_S = 120
TRADES = ("offer", "accept", "bid", "ask", "cancel", "counter")
# A small grid: one seller of energy, two buyers; enough to trade on the first ticks.
SCENARIO = """
name = "live-test"
operator = "operator"

[[participants]]
agent = "gas-1"
kind = "gas_plant"
opening = { energy = 60_000, water = 20_000, credits = 500_000 }
energy.produce = { base = 22_000, noise_permille = 20 }

[[participants]]
agent = "homes-1"
kind = "households"
opening = { energy = 2_000, water = 15_000, credits = 1_500_000 }
energy.consume = { base = 6_000, noise_permille = 100 }

[[participants]]
agent = "homes-2"
kind = "households"
opening = { energy = 1_000, water = 12_000, credits = 1_200_000 }
energy.consume = { base = 5_000, noise_permille = 100 }
"""


class Grid:
    """The command line, pointed at the test's own home, database and topics."""

    def __init__(self, home: Path, database: str, env: dict[str, str], scenario: Path) -> None:
        self.home, self.database, self.env, self.scenario = home, database, env, scenario

    def gridgov(self, *argv: str, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gridgov.cli", "--log-level", "WARNING", *argv]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False)

    def ok(self, *argv: str) -> str:
        done = self.gridgov(*argv)
        assert done.returncode == 0, f"gridgov {' '.join(argv)}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in json.loads(self.gridgov("status", "--json").stdout)}

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database) as conn:
            return conn.execute(query, params).fetchall()

    def tick(self) -> int:
        found = self.rows("SELECT tick FROM grid_status")
        return int(found[0][0]) if found else -1

    def traded_by(self, agent: str, after_tick: int = -1) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT kind, tick FROM ledger WHERE agent = %s AND kind = ANY(%s) AND tick > %s",
            agent,
            list(TRADES),
            after_tick,
        )

    def wait(self, check: Any, timeout_s: float, what: str) -> None:
        poll_until(check, timeout_s, what, interval_s=0.5)


@pytest.fixture(scope="module")
def grid(kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    home = with_credentials(tmp_path_factory.mktemp("live") / "home")
    scenario = home.parent / "live-test.toml"
    scenario.write_text(SCENARIO)
    with temporary_database(database_url) as database:
        env = {
            **os.environ,
            "GRID_HOME": str(home),
            "GRID_ENV_FILE": str(home / "grid.env"),
            "GRID_DATABASE_URL": database,
            "GRID_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "GRID_TOPIC_PREFIX": f"live{os.getpid()}",
            "GRID_TICK_S": str(TICK_S),
            "GRID_LIVE_SCENARIO": str(scenario),
            "GRID_LIVE_MARKET": "book",
            "GRID_LOG_LEVEL": "INFO",
        }
        found = Grid(home, database, env, scenario)
        try:
            yield found
        finally:
            found.gridgov("down")


def test_up_runs_every_service_and_separate_participant_processes_trade(grid: Grid) -> None:
    port = _free_port()
    out = grid.ok("up", "--dashboard-port", str(port))
    assert "live grid started" in out
    services = grid.status()
    assert set(services) == {
        "validator",
        "meter",
        "agent-gas-1",
        "agent-homes-1",
        "agent-homes-2",
        "sinks",
        "dashboard",
    }
    agents = {name: s["pid"] for name, s in services.items() if name.startswith("agent-")}
    assert len(set(agents.values())) == 3, "one process per participant"
    # each process holds its own key file, and no other
    for name in agents:
        command = Path(f"/proc/{agents[name]}/cmdline").read_text().replace("\0", " ")
        assert f"keys/{name.removeprefix('agent-')}.g0.key" in command and command.count("--key") == 1
    grid.wait(
        lambda: {"gas-1", "homes-1"} <= {a for (a,) in grid.rows("SELECT DISTINCT agent FROM ledger")}, 60, "trades"
    )
    assert grid.traded_by("gas-1") and grid.traded_by("homes-1")
    grid.wait(lambda: bool(grid.rows("SELECT 1 FROM ledger WHERE effects_json LIKE '%%\"fill\"%%'")), 30, "a fill")


def test_status_reports_state_lag_decisions_and_memory(grid: Grid) -> None:
    services = grid.status()
    # restarts are counted, not asserted away: a crash is supervisor's to restart, and it did its job
    assert all(s["state"] == "RUNNING" and s["restarts"] >= 0 for s in services.values()), services
    validator = services["validator"]
    assert validator["decisions"] > 0 and validator["lag"] is not None and validator["last"].startswith("seq ")
    assert services["meter"]["decisions"] > 0 and services["meter"]["last"].endswith("meter accepted")
    assert services["agent-gas-1"]["decisions"] > 0
    assert services["sinks"]["lag"] is not None
    assert all(s["rss_kb"] > 10_000 for s in services.values())
    table = grid.ok("status")
    assert "RESTARTS" in table and "agent-homes-2" in table


def test_a_participant_added_at_runtime_trades_within_a_few_ticks(grid: Grid) -> None:
    grid.ok("participants", "add", "gas-2", "--kind", "gas_plant")
    joined_tick = grid.tick()
    assert "added ['agent-gas-2']" in grid.ok("up", "--add-agent", "gas-2")
    grid.wait(lambda: bool(grid.traded_by("gas-2")), 30, "gas-2 to trade")
    first = min(tick for _, tick in grid.traded_by("gas-2"))
    assert first - joined_tick <= 20, "it trades within a few ticks of its process starting"
    assert grid.status()["agent-gas-2"]["state"] == "RUNNING"


def test_a_suspended_participant_stops_trading(grid: Grid) -> None:
    grid.ok("participants", "suspend", "gas-2", "--reason", "test: suspended at runtime")
    suspended_tick = grid.tick()
    log = grid.home / "live" / "logs" / "agent-gas-2.log"
    grid.wait(lambda: '"reason":"suspended"' in log.read_text(), 30, "gas-2 to notice")
    idle_from = grid.tick()
    grid.wait(lambda: grid.tick() >= idle_from + 4, 30, "four more ticks")
    assert grid.traded_by("gas-2", after_tick=suspended_tick) == []
    # it idles: nothing more proposed after it noticed (the law would refuse it anyway)
    assert grid.rows("SELECT count(*) FROM rejections WHERE agent = 'gas-2' AND tick > %s", idle_from) == [(0,)]
    assert grid.status()["agent-gas-2"]["state"] == "RUNNING"


def test_a_breaker_trip_halts_the_live_market_until_resumed(grid: Grid) -> None:
    grid.ok("breaker", "trip", "--reason", "test: operator trip")
    tripped = grid.tick()
    grid.wait(lambda: grid.tick() >= tripped + 3, 30, "three ticks with the breaker open")
    trades = grid.rows("SELECT count(*) FROM ledger WHERE kind = ANY(%s) AND tick > %s", list(TRADES), tripped + 1)
    assert trades == [(0,)], "the agents see the breaker open and hold"
    grid.ok("breaker", "resume", "--reason", "test: resumed")
    resumed = grid.tick()
    grid.wait(lambda: bool(grid.traded_by("homes-1", after_tick=resumed)), 30, "trading to resume")


def test_down_stops_only_what_up_started(grid: Grid) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pids = [s["pid"] for s in grid.status().values()]
        assert "live grid stopped" in grid.ok("down")
        assert not any(pid_alive(pid) for pid in pids)
        assert bystander.poll() is None, "a process up did not start is left alone"
        assert grid.rows("SELECT 1") == [(1,)], "the database (and the infrastructure) keep running"
        assert grid.gridgov("status").returncode == 1
    finally:
        bystander.kill()
        bystander.wait(10)


SOAK_S = 120  # the two-minute soak; ``make soak`` runs 30 minutes
GROWTH_PCT_MAX = 15  # from warm-up to the end: the state grows with participants and orders, not with time


def test_a_two_minute_soak_keeps_memory_flat_reports_its_figures_and_verifies(grid: Grid) -> None:
    done = grid.gridgov(
        "soak", "--duration-s", str(SOAK_S), "--sample-s", "10", "--no-dashboard", timeout_s=SOAK_S + 150
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    print(out)  # the figures, for the record (pytest -s shows them)
    assert "PEAK RSS MB" in out and "LAG AT END" in out
    lines = out.splitlines()
    for service in ("validator", "meter", "agent-gas-1", "agent-homes-1", "sinks"):
        assert any(line.startswith(service) and " up " in line for line in lines), service
    validator = next(line for line in lines if line.startswith("validator")).split()
    growth_pct = float(validator[5])  # "+3" of "+3 %"
    assert growth_pct <= GROWTH_PCT_MAX, validator
    assert "verify: " in out and out.rstrip().endswith("ok")
    assert "live grid stopped" in out
