"""The live grid's participants: who the meter meters and what each agent expects, from the registry.

A simulation knows its participants from the scenario alone. The live grid runs for days and takes
participants in at runtime (``gridgov participants add``), so the registry in the ledger decides who
exists, and the scenario only lends each one a profile: its own when the scenario names it, else that
of the scenario's first participant of the same kind (a second gas plant produces like the first),
else none (it is metered for nothing and trades what it holds). Pure: rows in, specs out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.scenario import ParticipantSpec, Scenario

RUN_ID = "live"  # proposal ids are "live-<agent>-<tick>-<n>" and "live-meter-<tick>"
PARTICIPANT_ROLE = "participant"


def live_spec(scenario: Scenario, agent: str, kind: str) -> ParticipantSpec:
    """``agent``'s profile: its scenario entry, a same-kind stand-in renamed, or a bare entry."""
    own = next((p for p in scenario.participants if p.agent == agent), None)
    if own is not None:
        return own
    alike = next((p for p in scenario.participants if p.kind == kind), None)
    if alike is not None:
        # model_copy does not validate: registry names follow the wire's rule, not the scenario file's.
        return alike.model_copy(update={"agent": agent, "opening": {}})
    return ParticipantSpec.model_construct(agent=agent, kind=kind)


def metered(scenario: Scenario, registry: Iterable[Mapping[str, Any]]) -> Scenario:
    """``scenario`` with the registry's participants in its place (by agent id, so the readings' order
    is stable), each with its ``live_spec``; those whose main account is not ``<agent>:main`` are left
    out, since a reading names that account."""
    specs = [
        live_spec(scenario, row["agent"], row["kind"])
        for row in sorted(registry, key=lambda r: str(r["agent"]))
        if row["role"] == PARTICIPANT_ROLE and f"{row['agent']}:main" in row["accounts"]
    ]
    return scenario.model_copy(update={"participants": specs})
