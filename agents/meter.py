"""Metering: what each participant produced and consumed in a tick, and the meter-signed ``meter``
proposal that posts it (the only kind that advances the grid clock).

Deterministic given the scenario and a seed: integer arithmetic only, a 24-tick day of per-mille
factors, and noise from ``random.Random(f"{seed}:{agent}:{tick}")`` -- a string seed, so it does not
depend on PYTHONHASHSEED, and one generator per (agent, tick), so a reading never depends on which
readings were computed before it.

The law then credits production, serves consumption from the balance and records the rest as
shortfall (see ``law.decide._meter_postings``); this module only reports the flows.
"""

from __future__ import annotations

import random
from typing import Any, get_args

from agents.scenario import Direction, Flow, Flowing, ParticipantSpec, Scenario
from schemas.envelope import build
from schemas.signing import Signer

TICKS_PER_DAY = 24
PERMILLE = 1_000
METER_TTL_TICKS = 5
CYCLE_DAYS_MIN = 2
FLOWING: tuple[Flowing, ...] = get_args(Flowing)
DIRECTIONS: tuple[tuple[Direction, str], ...] = (("produce", "produced"), ("consume", "consumed"))

# Per-mille of ``amplitude`` at each hour of the day (tick % 24).
SHAPES_PERMILLE: dict[str, tuple[int, ...]] = {
    "flat": (1000,) * TICKS_PER_DAY,
    # zero at night, a bell around 13:00
    "solar": (0, 0, 0, 0, 0, 0, 50, 150, 300, 500, 700, 850, 950, 1000, 950, 850, 700, 500, 300, 150, 50, 0, 0, 0),
    # stronger at night, a lull early afternoon
    "wind": (900, 950, 1000, 950, 900, 800, 700, 600, 500, 450, 400, 400, 400, 450, 500, 550, 600, 650, 700, 750, 800,
             850, 900, 900),
    # business hours: offices, irrigation, data-centre cooling
    "day": (300, 300, 300, 300, 300, 400, 600, 800, 900, 1000, 1000, 1000, 1000, 1000, 1000, 950, 900, 800, 700, 600,
            500, 400, 350, 300),
    # households: a morning bump and an evening peak
    "evening": (300, 250, 200, 200, 200, 300, 500, 700, 600, 500, 450, 450, 500, 500, 450, 450, 550, 750, 950, 1000,
                950, 800, 600, 400),
}  # fmt: skip
assert all(len(shape) == TICKS_PER_DAY for shape in SHAPES_PERMILLE.values())


def _shaped(flow: Flow, tick: int) -> int:
    return flow.base + flow.amplitude * SHAPES_PERMILLE[flow.shape][tick % TICKS_PER_DAY] // PERMILLE


def _with_events(scenario: Scenario, agent: str, resource: str, direction: str, tick: int, units: int) -> int:
    for event in scenario.events:
        if event.applies(agent, resource, direction, tick):
            units = units * event.factor_permille // PERMILLE
    return units


def forecast(scenario: Scenario, p: ParticipantSpec, resource: Flowing, direction: Direction, tick: int) -> int:
    """Units expected at ``tick`` without noise: what the participant itself can plan with."""
    flow: Flow | None = getattr(p.profile(resource), direction)
    if flow is None:
        return 0
    return _with_events(scenario, p.agent, resource, direction, tick, _shaped(flow, tick))


def cycle_ticks(scenario: Scenario) -> int:
    """The live grid's period: whole days that cover every event (two days at least), after which the
    scenario's profiles and events start over."""
    last_event_tick = max((e.to_tick for e in scenario.events), default=0)
    days = max(CYCLE_DAYS_MIN, -(-last_event_tick // TICKS_PER_DAY))
    return days * TICKS_PER_DAY


def scenario_tick(tick: int, cycle: int) -> int:
    """The scenario tick that grid tick ``tick`` plays: the same tick when ``cycle`` is 0 (a simulation),
    else ticks 1..cycle again and again, so a live grid runs day after day on a finite scenario."""
    return tick if cycle == 0 or tick < 1 else (tick - 1) % cycle + 1


def _noisy(flow: Flow, units: int, rng: random.Random) -> int:
    # Draw even when the noise is zero, so adding noise to one flow never shifts another's draws.
    # Never negative: the noise is at most half the value.
    jitter_permille = rng.randint(-flow.noise_permille, flow.noise_permille)
    return units * (PERMILLE + jitter_permille) // PERMILLE


def readings(scenario: Scenario, seed: int, tick: int, cycle: int = 0) -> list[dict[str, Any]]:
    """The meter readings of ``tick``: one per participant and resource that moved, in scenario order.
    With a ``cycle`` the profiles play ``scenario_tick``; the noise still follows the grid tick, so
    one day does not repeat the last one's exactly."""
    out: list[dict[str, Any]] = []
    profile_tick = scenario_tick(tick, cycle)
    for p in scenario.participants:
        rng = random.Random(f"{seed}:{p.agent}:{tick}")
        for resource in FLOWING:
            profile = p.profile(resource)
            units = {"produced": 0, "consumed": 0}
            for direction, key in DIRECTIONS:
                flow: Flow | None = getattr(profile, direction)
                if flow is not None:
                    units[key] = _noisy(flow, forecast(scenario, p, resource, direction, profile_tick), rng)
            if units["produced"] or units["consumed"]:
                out.append({"account": p.account, "resource": resource, **units})
    return out


def meter_proposal(
    scenario: Scenario, seed: int, tick: int, run_id: str, signer: Signer, nonce: int, cycle: int = 0
) -> dict[str, Any]:
    """The meter's signed ``meter`` proposal for ``tick``, with a deterministic id."""
    body = {"kind": "meter", "readings": readings(scenario, seed, tick, cycle)}
    pid = f"{run_id}-meter-{tick}"
    return build(scenario.meter, body, tick, METER_TTL_TICKS, signer, pid, nonce, {"source": "meter"})
