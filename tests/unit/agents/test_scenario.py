"""Scenario files: the bundled ones describe a varied grid and a stressed one; a bad file is refused
with a message that names the problem, never half-loaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents import scenario
from agents.scenario import SCENARIOS_DIR, Scenario, ScenarioError

BUNDLED = sorted(SCENARIOS_DIR.glob("*.toml"))
KINDS_DISTINCT_MIN = 10

MINIMAL = """
name = "tiny"

[[participants]]
agent = "solar-1"
kind = "solar_farm"
opening = { energy = 1_000 }
energy.produce = { amplitude = 5_000, shape = "solar" }

[[participants]]
agent = "home-1"
kind = "households"
energy.consume = { base = 500 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


@pytest.fixture(params=BUNDLED, ids=lambda p: p.stem)
def bundled(request: pytest.FixtureRequest) -> Scenario:
    return scenario.load(request.param)


def test_a_default_and_a_stressed_scenario_are_shipped() -> None:
    assert {p.stem for p in BUNDLED} >= {"default", "heatwave"}
    assert scenario.resolve("default") == scenario.DEFAULT_SCENARIO


def test_bundled_grids_are_varied_and_complete(bundled: Scenario) -> None:
    kinds = {p.kind for p in bundled.participants}
    assert len(bundled.participants) >= KINDS_DISTINCT_MIN
    assert len(kinds) >= KINDS_DISTINCT_MIN
    assert {"solar_farm", "gas_plant", "battery_storage", "desalination_plant", "hospital"} <= kinds
    assert any(p.emits_carbon for p in bundled.participants)
    assert any(p.critical_load for p in bundled.participants)
    assert all(p.opening.get("credits", 0) > 0 for p in bundled.participants)


def test_desalination_turns_energy_into_water_and_the_battery_only_stores(bundled: Scenario) -> None:
    desal = next(p for p in bundled.participants if p.kind == "desalination_plant")
    assert desal.energy.consume is not None and desal.water.produce is not None
    battery = next(p for p in bundled.participants if p.kind == "battery_storage")
    assert battery.energy.produce is None and battery.energy.consume is None


def test_the_heat_wave_stresses_the_grid_and_arms_the_breaker() -> None:
    heatwave = scenario.load(scenario.resolve("heatwave"))
    default = scenario.load(scenario.DEFAULT_SCENARIO)
    assert heatwave.events, "a stressed scenario has events"
    assert any(e.flow == "produce" and e.factor_permille == 0 for e in heatwave.events), "a plant outage"
    assert any(e.flow == "consume" and e.factor_permille > 1_000 for e in heatwave.events), "demand rises"
    assert heatwave.policy["breaker_critical_shortfall_max"] >= 0
    assert heatwave.policy["breaker_reserve_min_permille"] > 0
    assert heatwave.policy["breaker_critical_shortfall_max"] < default.policy["breaker_critical_shortfall_max"]


def test_a_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    tiny = scenario.load(write(tmp_path, MINIMAL))
    solar = tiny.participant("solar-1")
    assert (tiny.operator, solar.account, solar.strategy) == ("operator", "solar-1:main", "auto")
    assert solar.energy.produce is not None and solar.energy.produce.base == 0
    assert tiny.participant("home-1").opening == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "households"', 'kind = "households"\ncolour = "blue"'), "participants.1.colour"),
        (("base = 500", "base = 500.5"), "participants.1.energy.consume.base"),
        (("base = 500", "base = -1"), "participants.1.energy.consume.base"),
        (("base = 500", 'base = "500"'), "participants.1.energy.consume.base"),
        (('shape = "solar"', 'shape = "lunar"'), "shape"),
        (('shape = "solar"', 'shape = "solar", noise_permille = 900'), "noise_permille"),
        (('agent = "home-1"', 'agent = "solar-1"'), "unique"),
        (('agent = "home-1"', 'agent = "operator"'), "unique"),
        (('agent = "home-1"', 'agent = "Home 1"'), "participants.1.agent"),
        (('name = "tiny"', 'name = "tiny"\n[policy]\ncarbon_tax = 5'), "unknown policy parameter 'carbon_tax'"),
        (('name = "tiny"', 'name = "tiny"\n[policy]\nstressed_ceiling_pct = 0'), "stressed_ceiling_pct=0 outside"),
        (("opening = { energy = 1_000 }", "opening = { gold = 1 }"), "participants.0.opening.gold"),
    ],
)
def test_a_bad_file_is_refused_with_the_reason(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ScenarioError, match=r"scenario\.toml") as refused:
        scenario.load(write(tmp_path, MINIMAL.replace(*change)))
    assert message in str(refused.value)


EVENT = """
[[events]]
name = "outage"
from_tick = {start}
to_tick = {end}
agents = [{agents}]
resource = "energy"
flow = "produce"
factor_permille = 0
"""


@pytest.mark.parametrize(
    ("start", "end", "agents", "message"),
    [(5, 4, '"solar-1"', "ends (tick 4) before it starts"), (1, 4, '"wind-9"', "unknown participants ['wind-9']")],
)
def test_events_must_be_consistent(tmp_path: Path, start: int, end: int, agents: str, message: str) -> None:
    text = MINIMAL + EVENT.format(start=start, end=end, agents=agents)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        scenario.load(write(tmp_path, text))


def test_not_toml_and_missing_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        scenario.load(write(tmp_path, "name = "))
    with pytest.raises(ScenarioError, match=r"missing\.toml"):
        scenario.load(tmp_path / "missing.toml")


def test_resolve_takes_a_bundled_name_or_a_path(tmp_path: Path) -> None:
    assert scenario.resolve("heatwave") == SCENARIOS_DIR / "heatwave.toml"
    assert scenario.resolve(str(tmp_path / "x.toml")) == tmp_path / "x.toml"
    assert scenario.resolve("nonexistent") == Path("nonexistent")
