"""Wiring the participants: a strategy per agent (heuristic, Gemini or the adversary), each in its own
loop (``agents.runner``), delivering to the outbox or, free-running, straight to the broker."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field

from agents.adversarial import AdversarialStrategy
from agents.book_strategy import BookStrategy
from agents.gemini_strategy import GeminiStrategy
from agents.heuristic import HeuristicStrategy
from agents.namespace import Namespace
from agents.runner import Adversary, AgentLoop, Brain, Deliver, Identity, Outbox, Publisher, Trader
from agents.scenario import ParticipantSpec, Scenario, ScenarioError
from agents.simulation_config import SimulationConfig
from agents.strategy import Decision, Strategy
from agents.view import AgentView
from connectors.gemini import GeminiClient
from schemas.signing import HmacSigner

ADVERSARY = "mallory"
ADVERSARY_OPENING = {"energy": 1_000, "water": 5_000, "credits": 10_000}


def agent_seed(seed: int, agent: str) -> int:
    """Each agent's own random stream, independent of the others and of PYTHONHASHSEED."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{agent}".encode()).digest()[:8], "big")


class CountingStrategy:
    """Counts where each decision came from (Gemini, a fallback and why, the heuristic), holds included."""

    def __init__(self, inner: Strategy) -> None:
        self.inner, self.name = inner, inner.name
        self.sources: Counter[str] = Counter()

    def choose(self, view: AgentView) -> Decision:
        decision = self.inner.choose(view)
        fallback = decision.provenance.get("fallback")
        self.sources[f"fallback ({fallback})" if fallback else decision.provenance["source"]] += 1
        return decision


@dataclass
class Cast:
    """Everything that acts for the participants: loops, strategies, and the clients to close."""

    loops: list[AgentLoop] = field(default_factory=list)
    strategies: dict[str, CountingStrategy] = field(default_factory=dict)
    clients: list[GeminiClient] = field(default_factory=list)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def strategy_plan(config: SimulationConfig, specs: list[ParticipantSpec]) -> dict[str, str]:
    """agent -> "heuristic", "gemini" or "adversarial", checked before anything starts."""
    plan = {}
    for spec in specs:
        if spec.agent == ADVERSARY and config.adversarial:
            plan[spec.agent] = "adversarial"
        elif spec.strategy == "gemini" or (spec.strategy == "auto" and config.gemini is not None):
            if config.gemini is None:
                raise ScenarioError(f"{spec.agent} asks for the Gemini strategy: set GEMINI_API_KEY")
            plan[spec.agent] = "gemini"
        else:
            plan[spec.agent] = "heuristic"
    return plan


def _brain(
    name: str, spec: ParticipantSpec, config: SimulationConfig, ns: Namespace, signer: HmacSigner, cast: Cast
) -> Brain:
    seed = agent_seed(config.seed, spec.agent)
    if name == "adversarial":
        return Adversary(AdversarialStrategy(seed), signer, ns.run_id, _victim(config.scenario))
    heuristic: HeuristicStrategy | BookStrategy = (
        HeuristicStrategy(seed) if config.market == "offers" else BookStrategy()
    )
    strategy: Strategy = heuristic
    if name == "gemini" and config.gemini is not None:
        client = GeminiClient(config.gemini)
        cast.clients.append(client)
        strategy = GeminiStrategy(client, fallback=heuristic)
    counted = cast.strategies[spec.agent] = CountingStrategy(strategy)
    return Trader(counted, signer, ns.run_id)


def adversary_spec(scenario: Scenario) -> ParticipantSpec:
    if any(p.agent == ADVERSARY for p in scenario.participants):
        raise ScenarioError(f"the adversary's id {ADVERSARY!r} is taken by a participant")
    return ParticipantSpec.model_validate(
        {"agent": ADVERSARY, "kind": "adversary", "strategy": "heuristic", "opening": ADVERSARY_OPENING}
    )


def _victim(scenario: Scenario) -> str:
    critical = [p for p in scenario.participants if p.critical_load]
    return (critical or scenario.participants)[0].account


def _deliver(config: SimulationConfig, ns: Namespace, outbox: Outbox) -> Deliver:
    if not config.free_running:
        return lambda agent, tick, messages: outbox.submit(agent, tick, messages, [])

    publisher = Publisher(ns.settings.kafka("producer"), ns.topic)  # the agent's own producer
    return lambda agent, tick, messages: outbox.submit(agent, tick, [], publisher.publish(messages))


def cast_agents(
    cast: Cast,
    config: SimulationConfig,
    ns: Namespace,
    signers: dict[str, HmacSigner],
    outbox: Outbox,
    plan: dict[str, str],
    specs: list[ParticipantSpec],
    stop: threading.Event,
) -> None:
    """One loop per participant into ``cast``, not started yet, each given only its own key."""
    for spec in specs:
        brain = _brain(plan[spec.agent], spec, config, ns, signers[spec.agent], cast)
        deliver = _deliver(config, ns, outbox)
        me = Identity(spec, config.scenario)
        cast.loops.append(AgentLoop(me, brain, ns.settings.database_url, deliver, outbox, stop))
