"""The live grid's participants come from the registry; the scenario lends each one a profile."""

from __future__ import annotations

from typing import Any

import pytest

from agents import scenario
from agents.live import live_spec, metered
from agents.meter import readings
from agents.scenario import Scenario


@pytest.fixture(scope="module")
def grid() -> Scenario:
    return scenario.load(scenario.DEFAULT_SCENARIO)


def row(agent: str, kind: str, role: str = "participant", accounts: list[str] | None = None) -> dict[str, Any]:
    return {"agent": agent, "kind": kind, "role": role, "accounts": accounts or [f"{agent}:main"]}


def test_a_scenario_participant_keeps_its_own_profile(grid: Scenario) -> None:
    assert live_spec(grid, "solar-1", "solar_farm") == grid.participant("solar-1")


def test_a_newcomer_borrows_the_profile_of_the_first_of_its_kind(grid: Scenario) -> None:
    spec = live_spec(grid, "gas-2", "gas_plant")
    gas = grid.participant("gas-1")
    assert (spec.agent, spec.account, spec.kind) == ("gas-2", "gas-2:main", "gas_plant")
    assert (spec.energy, spec.water, spec.emits_carbon) == (gas.energy, gas.water, gas.emits_carbon)
    assert spec.opening == {}, "the ledger, not the scenario, says what a newcomer holds"


def test_a_newcomer_of_an_unknown_kind_is_metered_for_nothing(grid: Scenario) -> None:
    spec = live_spec(grid, "kiosk-1", "generic")
    assert (spec.agent, spec.kind) == ("kiosk-1", "generic")
    assert spec.energy.produce is None and spec.water.consume is None


def test_the_metered_grid_is_the_registry_in_agent_order(grid: Scenario) -> None:
    registry = [
        row("wind-1", "wind_farm"),
        row("operator", "operator", role="operator"),
        row("meter", "meter", role="meter"),
        row("gas-2", "gas_plant"),
        row("odd-1", "gas_plant", accounts=["odd-1:spare"]),
    ]
    live = metered(grid, registry)
    assert [p.agent for p in live.participants] == ["gas-2", "wind-1"]
    accounts = {r["account"] for r in readings(live, 7, 13)}
    assert accounts == {"gas-2:main", "wind-1:main"}
