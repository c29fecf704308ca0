"""Metering: readings follow the profiles and events, are a pure function of (scenario, seed, tick),
and travel as an operator-signed meter proposal that the codec accepts."""

from __future__ import annotations

from typing import Any

import pytest

from agents import meter, scenario
from agents.meter import SHAPES_PERMILLE, TICKS_PER_DAY, forecast, meter_proposal, readings
from agents.scenario import Scenario
from schemas import codec
from schemas.keys import derive_key
from schemas.signing import HmacSigner, hmac_valid
from schemas.types import READINGS_COUNT_MAX

SECRET = b"meter-test-secret"
NOON, MIDNIGHT = 13, 24


@pytest.fixture(scope="module")
def grid() -> Scenario:
    return scenario.load(scenario.DEFAULT_SCENARIO)


@pytest.fixture(scope="module")
def heatwave() -> Scenario:
    return scenario.load(scenario.resolve("heatwave"))


def by_account(rows: list[dict[str, Any]], resource: str) -> dict[str, dict[str, Any]]:
    return {r["account"]: r for r in rows if r["resource"] == resource}


def test_the_same_seed_gives_the_same_readings_in_any_order(grid: Scenario) -> None:
    forwards = [readings(grid, 7, t) for t in range(1, 30)]
    backwards = [readings(grid, 7, t) for t in reversed(range(1, 30))][::-1]
    assert forwards == backwards
    assert readings(grid, 7, 5) != readings(grid, 8, 5), "the seed drives the noise"


def test_solar_follows_the_sun(grid: Scenario) -> None:
    solar = grid.participant("solar-1")
    assert forecast(grid, solar, "energy", "produce", MIDNIGHT) == 0
    assert "solar-1:main" not in {r["account"] for r in readings(grid, 1, MIDNIGHT) if r["produced"]}
    noon = forecast(grid, solar, "energy", "produce", NOON)
    assert noon == max(forecast(grid, solar, "energy", "produce", t) for t in range(TICKS_PER_DAY))
    assert solar.energy.produce is not None and noon == solar.energy.produce.amplitude


def test_noise_stays_within_its_bound_of_the_forecast(grid: Scenario) -> None:
    for tick in range(1, TICKS_PER_DAY + 1):
        for row in readings(grid, 3, tick):
            p = next(p for p in grid.participants if p.account == row["account"])
            for direction, key in meter.DIRECTIONS:
                flow = getattr(p.profile(row["resource"]), direction)
                expected = forecast(grid, p, row["resource"], direction, tick)
                bound = expected * (flow.noise_permille if flow else 0) // 1_000 + 1
                assert abs(row[key] - expected) <= bound, (row, direction)


def test_desalination_consumes_energy_and_produces_water_and_the_battery_is_silent(grid: Scenario) -> None:
    rows = readings(grid, 1, 10)
    assert by_account(rows, "energy")["desal-1:main"]["consumed"] > 0
    assert by_account(rows, "water")["desal-1:main"]["produced"] > 0
    assert "battery-1:main" not in {r["account"] for r in rows}
    assert all(r["produced"] or r["consumed"] for r in rows)
    assert len(rows) <= READINGS_COUNT_MAX


def test_events_scale_flows_only_while_they_last(heatwave: Scenario) -> None:
    gas = heatwave.participant("gas-1")
    outage = next(e for e in heatwave.events if e.agents == ["gas-1"])
    assert forecast(heatwave, gas, "energy", "produce", outage.from_tick - 1) > 0
    assert forecast(heatwave, gas, "energy", "produce", outage.from_tick) == 0
    assert forecast(heatwave, gas, "energy", "produce", outage.to_tick + 1) > 0
    hospital = heatwave.participant("hospital-1")
    heat = next(e for e in heatwave.events if "hospital-1" in e.agents and e.flow == "consume")
    during = forecast(heatwave, hospital, "energy", "consume", heat.to_tick)
    same_hour_later = forecast(heatwave, hospital, "energy", "consume", heat.to_tick + TICKS_PER_DAY)
    assert during == same_hour_later * heat.factor_permille // 1_000 > same_hour_later


def test_shapes_are_a_day_of_per_mille_factors() -> None:
    for name, shape in SHAPES_PERMILLE.items():
        assert len(shape) == TICKS_PER_DAY and all(0 <= f <= 1_000 for f in shape), name
        assert max(shape) == 1_000, name


def test_the_meter_proposal_is_signed_by_the_meter_and_decodes(grid: Scenario) -> None:
    signer = HmacSigner(derive_key(SECRET, grid.meter))
    proposal = meter_proposal(grid, 1, 6, "run-a", signer, 7)
    decoded = codec.decode(codec.encode(proposal))
    assert isinstance(decoded, codec.Decoded), decoded
    p = decoded.proposal
    assert (p.id, p.agent, p.tick, p.body.kind) == ("run-a-meter-6", grid.meter, 6, "meter")
    assert p.provenance is not None and p.provenance.source == "meter"
    assert hmac_valid(decoded.signed_bytes, decoded.sig, signer.key)
    assert proposal == meter_proposal(grid, 1, 6, "run-a", signer, 7), "byte-for-byte reproducible"


# --- the live grid's cycle ----------------------------------------------------------------------------


def test_the_cycle_covers_every_event_in_whole_days(grid: Scenario, heatwave: Scenario) -> None:
    assert meter.cycle_ticks(grid) == 2 * TICKS_PER_DAY  # no events: the two-day minimum
    last_event = max(e.to_tick for e in heatwave.events)
    cycle = meter.cycle_ticks(heatwave)
    assert cycle % TICKS_PER_DAY == 0 and last_event <= cycle < last_event + TICKS_PER_DAY


def test_grid_ticks_play_the_scenario_day_after_day() -> None:
    assert [meter.scenario_tick(t, 48) for t in (0, 1, 48, 49, 97)] == [0, 1, 48, 1, 1]
    assert meter.scenario_tick(500, 0) == 500, "a simulation plays its ticks as they are"


def test_a_looping_grid_repeats_the_profile_with_fresh_noise(grid: Scenario) -> None:
    cycle = meter.cycle_ticks(grid)
    first, again = readings(grid, 7, 5, cycle), readings(grid, 7, 5 + cycle, cycle)
    assert [r["account"] for r in first] == [r["account"] for r in again]
    assert first != again, "the noise follows the grid tick"
    assert readings(grid, 7, 5) == readings(grid, 7, 5, cycle), "within the first cycle nothing changes"
