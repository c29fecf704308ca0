"""A scenario file: the grid's participants, their opening balances and production/consumption
profiles, the policy in force at genesis and the events (heat wave, plant outage) that stress it.

TOML, read with ``tomllib`` and validated by strict pydantic models, so a typo in a key is an error
that names it, never a silently ignored value. Units are the ledger's: energy in Wh, water in
litres, credits in millicredits. A profile is per participant, per resource, per direction::

    [[participants]]
    agent = "solar-1"
    kind = "solar_farm"
    opening = { energy = 20_000, credits = 500_000 }
    energy.produce = { amplitude = 40_000, shape = "solar", noise_permille = 100 }

Keys are not in the file: each agent's HMAC key is derived from the grid's key secret and its id
(``schemas.keys.derive_key``), and only its fingerprint enters the genesis entry. Each participant
trades from one account, ``<agent>:main``.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from law.policy import invalid_param
from schemas.types import PARTICIPANTS_COUNT_MAX, QUANTITY_MAX, TICK_MAX, Resource

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIOS_DIR / "default.toml"
SCENARIO_BYTES_MAX = 256 * 1024
NOISE_PERMILLE_MAX = 500
EVENT_FACTOR_PERMILLE_MAX = 10_000
EVENTS_COUNT_MAX = 64
# Proposal ids are "<run>-<agent>-<tick>-<n>" and at most 64 characters, so agent ids stay short.
AgentName = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z0-9][a-z0-9-]{0,23}$")]
ShapeName = Literal["flat", "solar", "wind", "day", "evening"]
Flowing = Literal["energy", "water"]  # credits are never produced or consumed by the meter
Direction = Literal["produce", "consume"]
Units = Annotated[int, Field(strict=True, ge=0, le=QUANTITY_MAX)]


class ScenarioError(ValueError):
    """The file is missing, not TOML, or does not describe a valid grid."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Flow(_Strict):
    """Units per tick: ``base + amplitude * shape[hour] / 1000``, then +-``noise_permille`` (seeded)."""

    base: Units = 0
    amplitude: Units = 0
    shape: ShapeName = "flat"
    noise_permille: Annotated[int, Field(strict=True, ge=0, le=NOISE_PERMILLE_MAX)] = 0


class Profile(_Strict):
    produce: Flow | None = None
    consume: Flow | None = None


class ParticipantSpec(_Strict):
    agent: AgentName
    kind: Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    emits_carbon: bool = False
    critical_load: bool = False
    # auto: Gemini when GEMINI_API_KEY is set, else the heuristic.
    strategy: Literal["auto", "heuristic", "gemini"] = "auto"
    opening: dict[Resource, Units] = Field(default_factory=dict)
    energy: Profile = Profile()
    water: Profile = Profile()

    @property
    def account(self) -> str:
        return f"{self.agent}:main"

    def profile(self, resource: Flowing) -> Profile:
        return self.energy if resource == "energy" else self.water


class Event(_Strict):
    """Scale one flow of some participants (all when ``agents`` is empty) during [from_tick, to_tick]."""

    name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=80)]
    from_tick: Annotated[int, Field(strict=True, ge=1, le=TICK_MAX)]
    to_tick: Annotated[int, Field(strict=True, ge=1, le=TICK_MAX)]
    agents: list[AgentName] = Field(default_factory=list)
    resource: Flowing
    flow: Direction
    factor_permille: Annotated[int, Field(strict=True, ge=0, le=EVENT_FACTOR_PERMILLE_MAX)]

    def applies(self, agent: str, resource: str, flow: str, tick: int) -> bool:
        return (
            self.from_tick <= tick <= self.to_tick
            and self.resource == resource
            and self.flow == flow
            and (not self.agents or agent in self.agents)
        )


class Scenario(_Strict):
    name: Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z0-9][a-z0-9-]{0,15}$")]
    description: Annotated[str, StringConstraints(strict=True, max_length=500)] = ""
    operator: AgentName = "operator"
    # The grid's meter: a service principal of its own, whose key signs meter entries only.
    meter: AgentName = "meter"
    policy: dict[str, int] = Field(default_factory=dict)
    # The genesis registers the operator (and an adversary when asked) besides these.
    participants: Annotated[list[ParticipantSpec], Field(min_length=2, max_length=PARTICIPANTS_COUNT_MAX - 3)]
    events: Annotated[list[Event], Field(max_length=EVENTS_COUNT_MAX)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [p.agent for p in self.participants]
        twice = sorted(n for n, count in Counter([*names, self.operator, self.meter]).items() if count > 1)
        if twice:
            raise ValueError(f"agent ids must be unique (operator and meter included): {twice}")
        bad_policy = invalid_param(self.policy)
        if bad_policy is not None:
            raise ValueError(f"policy: {bad_policy[1]}")
        for event in self.events:
            unknown = sorted(set(event.agents) - set(names))
            if unknown:
                raise ValueError(f"event {event.name!r} names unknown participants {unknown}")
            if event.to_tick < event.from_tick:
                raise ValueError(f"event {event.name!r} ends (tick {event.to_tick}) before it starts")
        return self

    def participant(self, agent: str) -> ParticipantSpec:
        return next(p for p in self.participants if p.agent == agent)


def load(path: Path) -> Scenario:
    """Read and validate a scenario file; every problem is a ``ScenarioError`` naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from exc
    if len(raw) > SCENARIO_BYTES_MAX:
        raise ScenarioError(f"{path}: {len(raw)} bytes; a scenario is at most {SCENARIO_BYTES_MAX}")
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ScenarioError(f"{path}: {problems}") from exc


def resolve(name_or_path: str) -> Path:
    """A bundled scenario by name (``default``, ``heatwave``) or a path to a file."""
    bundled = SCENARIOS_DIR / f"{name_or_path}.toml"
    return bundled if "/" not in name_or_path and bundled.exists() else Path(name_or_path)
