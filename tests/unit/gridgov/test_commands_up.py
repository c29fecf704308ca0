"""`gridgov up`'s plan (what a later `up` keeps) and `gridgov live-keys` (compose's key files)."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from agents import scenario as scenarios
from core import agent_keys, config
from gridgov import cli
from gridgov.commands.up import add_up_arguments, plan_from
from gridgov.live import Plan

SECRET_HEX = "11" * 32


def up_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_up_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_first_up_takes_the_settings() -> None:
    settings = config.load().replace(tick_s=2.5, live_market="offers", dashboard_port=8600)
    plan = plan_from(up_args(), settings, None)
    assert (plan.tick_s, plan.market, plan.dashboard_port, plan.sinks, plan.agents) == (2.5, "offers", 8600, True, {})


def test_a_later_up_keeps_the_plan_unless_told_otherwise() -> None:
    settings = config.load().replace(tick_s=9.0)
    kept = Plan("default", "book", 4, 0.5, {"gas-2": "/k/gas-2.g0.key"}, sinks=False, dashboard_port=None)
    again = plan_from(up_args("--add-agent", "x"), settings, kept)
    assert again == kept, "settings do not undo what the running grid was started with"
    changed = plan_from(up_args("--tick-s", "1", "--dashboard-port", "8700"), settings, kept)
    assert (changed.tick_s, changed.dashboard_port, changed.agents) == (1.0, 8700, kept.agents)
    assert plan_from(up_args("--no-dashboard", "--no-sinks"), settings, changed).dashboard_port is None


def test_live_keys_lays_out_one_directory_per_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRID_KEY_SECRET", SECRET_HEX)
    out = tmp_path / "keys"
    assert cli.main(["live-keys", "--out", str(out)]) == 0
    grid = scenarios.load(scenarios.DEFAULT_SCENARIO)
    assert sorted(p.name for p in (out / "meter").iterdir()) == ["meter.g0.key", "registry.json"]
    assert sorted(p.name for p in (out / "agents").iterdir()) == sorted(f"{p.agent}.g0.key" for p in grid.participants)
    registry = orjson.loads((out / "meter" / "registry.json").read_bytes())
    key = agent_keys.load(out / "agents" / "solar-1.g0.key")
    assert registry["solar-1"] == key.fingerprint == agent_keys.issue(bytes.fromhex(SECRET_HEX), "solar-1").fingerprint
    assert (out / "agents" / "solar-1.g0.key").stat().st_mode & 0o077 == 0, "a key file is its owner's alone"
    assert cli.main(["live-keys", "--out", str(out)]) == 0, "idempotent: the files already hold those keys"
