"""Agent loops, the world each one may see, and the publication clock that keeps a run reproducible.

Every participant runs its own loop (a thread): it polls Postgres for the grid tick, and when the
operator's meter entry has moved it, reads *its* view (own balances, own recent rejections, the open
offers, breaker, policy and telemetry, its unmet demand), asks its strategy for an intent and signs
the proposal with its own key through ``gridgov propose``'s ``build``. Nobody tells an agent what to
do or when; the validator's topic order is the only order of decisions. The operator publishes
everything it does in a tick (a breaker resume) before that tick's meter entry, so the state an
agent reads once it sees tick t is final until the agents' own turns are published.

Determinism versus autonomy. The ledger's hash chain covers every entry's Kafka offset and the
state it was decided against, so the same scenario and seed reproduce the same head hash only if
the proposals reach the topic in the same order. Agents that race to the broker do not. So in the
default *lockstep* mode an agent hands its signed proposals for tick t to the ``Outbox`` instead of
the broker; once every agent has handed in its turn for t (or ``tick_timeout_s`` passes), the
outbox is published in a seeded per-tick shuffle of the agents (each agent's own messages in its
order n). Sorting by agent id would be just as reproducible, but it hands the same agents the first
pick of every offer each tick: measured on the default scenario, ``water-1`` and ``wind-1`` lost
every race for an offer. This is a publication clock, not an orchestrator: it never chooses,
reorders by content or drops a proposal it received in time, and agents decide concurrently from
what they read themselves. The price: a tick is as slow as its slowest agent, and an agent later
than the timeout misses the tick (its turn is recorded and discarded) -- from then on the run is no
longer guaranteed reproducible, and the summary says so.

In *free-running* mode each agent publishes straight to the broker as soon as it has decided: the
realistic interleaving, different on every run, and so is the head hash. The meter still waits
until every agent has finished its turn (or the timeout), so no agent is starved of ticks.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from agents.adversarial import AdversarialStrategy, Attack
from agents.intent import to_body
from agents.meter import FLOWING, forecast, scenario_tick
from agents.scenario import ParticipantSpec, Scenario
from agents.strategy import Strategy
from agents.view import AgentView, OpenOffer, RecentRejection, RestingOrder
from connectors.kafka_io import DeliveryError, proposal_producer
from connectors.readmodel.agents import grid_tick, read_only_connection, snapshot
from connectors.readmodel.ledger import last_nonce
from core.kafka_access import KafkaAccess
from core.process import WaitTimeoutError, poll_until
from law import State, price_ceiling
from law.state import Telemetry
from schemas.codec import encode
from schemas.envelope import Nonces, build
from schemas.signing import HmacSigner, Signer

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.02  # an agent notices a new grid tick within this
IDLE_EXIT_S = 900.0  # an agent that sees no new tick for this long stops on its own
FLUSH_TIMEOUT_S = 30.0
PROPOSAL_TTL_TICKS = 3
REJECTIONS_SHOWN_MAX = 16
MARKET_OFFERS_SHOWN_MAX = 200  # cheapest offers of others per view; own offers are always shown
ATTACKS_PER_TICK = 4
# A key the validator never issued: the adversary's guess at another key.
WRONG_KEY = b"adversary-guess".ljust(32, b"\0")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka message an agent wants published, with what it expects when it is an attack."""

    agent: str
    n: int  # the agent's message number within its turn: the publication order inside an agent
    payload: bytes
    proposal_id: str | None
    attack: str | None = None
    expected_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    message: Outgoing
    offset: int


def proposal_id(run_id: str, agent: str, tick: int, n: int) -> str:
    return f"{run_id}-{agent}-{tick}-{n}"


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """Provenance without empty fields, and a model's text without control characters (a rationale
    with a newline would make the whole proposal MALFORMED): what is known, nothing else."""
    return {
        k: CONTROL_CHARACTERS.sub(" ", v) if isinstance(v, str) else v for k, v in provenance.items() if v is not None
    }


# --- publishing ------------------------------------------------------------------------------------


class Publisher:
    """One producer; ``publish`` returns each message's offset once the broker acknowledged them all."""

    def __init__(self, kafka: KafkaAccess, topic: str) -> None:
        self._producer = proposal_producer(kafka)
        self._topic = topic

    def publish(self, messages: list[Outgoing]) -> list[Sent]:
        offsets: dict[int, int] = {}
        failures: list[str] = []

        def delivered(index: int, err: KafkaError | None, msg: Message) -> None:
            offset = msg.offset()
            if err is not None or offset is None:
                failures.append(str(err))
            else:
                offsets[index] = offset

        for index, message in enumerate(messages):
            self._producer.produce(self._topic, value=message.payload, on_delivery=functools.partial(delivered, index))
        if self._producer.flush(FLUSH_TIMEOUT_S) > 0:
            raise DeliveryError(f"messages still undelivered after {FLUSH_TIMEOUT_S} s")
        if failures:
            raise DeliveryError(f"{len(failures)} messages failed: {failures[0]}")
        return [Sent(m, offsets[i]) for i, m in enumerate(messages)]


class Outbox:
    """The lockstep publication clock's collecting side: one turn per agent per tick.

    The clock ``open``s tick t before its meter entry is published, so no agent can hand in a turn
    for t before it opens; ``close`` waits (bounded) for every agent and returns the messages in
    publication order. A turn for a tick that is not open is late: recorded, never published.
    """

    def __init__(self, agents: Iterable[str], order_salt: str) -> None:
        self._agents = frozenset(agents)
        self._salt = order_salt
        self._cond = threading.Condition()
        self._tick = -1
        self._turns: dict[str, list[Outgoing]] = {}
        self.sent_by_agents: list[Sent] = []  # free-running: what agents published themselves
        self.late: list[tuple[str, int]] = []

    def open(self, tick: int) -> None:
        with self._cond:
            self._tick, self._turns = tick, {}

    def submit(self, agent: str, tick: int, messages: list[Outgoing], sent: list[Sent]) -> None:
        with self._cond:
            self.sent_by_agents += sent
            if tick != self._tick or agent in self._turns:
                self.late.append((agent, tick))
                return
            self._turns[agent] = messages
            self._cond.notify_all()

    def leave(self, agent: str) -> None:
        """An agent whose loop ended: later ticks stop waiting for it."""
        with self._cond:
            self._agents -= {agent}
            self._cond.notify_all()

    def close(self, timeout_s: float) -> tuple[list[Outgoing], list[str]]:
        """(messages in publication order, agents that missed the tick)."""
        with self._cond:
            # Agents that miss the timeout are reported, not waited for: the tick goes on without them.
            self._cond.wait_for(lambda: self._agents <= self._turns.keys(), timeout_s)
            turns, tick, self._tick = self._turns, self._tick, -1
        rank = {agent: publication_rank(self._salt, tick, agent) for agent in turns}
        messages = sorted((m for ms in turns.values() for m in ms), key=lambda m: (rank[m.agent], m.n))
        return messages, sorted(self._agents - turns.keys())


def publication_rank(salt: str, tick: int, agent: str) -> bytes:
    """An agent's place in tick ``tick``'s publication order: a seeded shuffle, new every tick."""
    return hashlib.sha256(f"{salt}:{tick}:{agent}".encode()).digest()


# --- what an agent may see -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the loop acts for: its registry entry and its profile's forecast."""

    spec: ParticipantSpec
    scenario: Scenario
    cycle: int = 0  # a live grid's period (``agents.meter.cycle_ticks``); 0: the scenario plays once

    @property
    def agent(self) -> str:
        return self.spec.agent


class World:
    """One agent's read-only window on Postgres. Views are read in one REPEATABLE READ snapshot."""

    def __init__(self, database_url: str) -> None:
        self.conn = read_only_connection(database_url)

    def close(self) -> None:
        self.conn.close()

    def grid_tick(self) -> int:
        return grid_tick(self.conn)

    def wait_tick_after(
        self, tick: int, stop: threading.Event, timeout_s: float, interval_s: float = POLL_INTERVAL_S
    ) -> int | None:
        """The first grid tick above ``tick``, or None on stop or timeout; polled every ``interval_s``."""
        seen = tick

        def moved_or_stopped() -> bool:
            nonlocal seen
            if stop.is_set():
                return True
            seen = self.grid_tick()
            return seen > tick

        try:
            poll_until(moved_or_stopped, timeout_s, f"a grid tick after {tick}", interval_s=interval_s)
        except WaitTimeoutError:
            return None  # no tick for that long: the run is over, or gone
        return seen if seen > tick else None

    def view(self, me: Identity) -> AgentView:
        grid = snapshot(self.conn, me.agent, me.spec.account, MARKET_OFFERS_SHOWN_MAX, REJECTIONS_SHOWN_MAX)
        tick = grid.tick
        next_tick = scenario_tick(tick + 1, me.cycle)
        return AgentView(
            agent=me.agent,
            participant_kind=me.spec.kind,
            account=me.spec.account,
            tick=tick,
            balances=grid.balances,
            # What the participant expects next tick from its own (noise-free) profile.
            expected_production={r: forecast(me.scenario, me.spec, r, "produce", next_tick) for r in FLOWING},
            expected_consumption={r: forecast(me.scenario, me.spec, r, "consume", next_tick) for r in FLOWING},
            shortfall={r: units for a, r, units in grid.shortfall if a == me.spec.account},
            open_offers=tuple(OpenOffer(*row) for row in sorted(grid.offers)),
            # oldest first, as strategies read them
            recent_rejections=tuple(RecentRejection(*row) for row in reversed(grid.rejections)),
            breaker_open=grid.breaker_open,
            price_ceiling=_ceilings(grid.policy, Telemetry(**grid.telemetry)),
            trade_quantity_max={r: grid.policy[f"trade_quantity_max_{r}"] for r in FLOWING},
            own_orders=tuple(RestingOrder(*row) for row in grid.orders),
            quotes={resource: (best_bid, best_ask) for resource, best_bid, best_ask in grid.quotes},
        )

    def last_nonce(self, agent: str) -> int:
        """The last nonce the validator decided for ``agent``: re-using it is a duplicate."""
        return last_nonce(self.conn, agent)


def _ceilings(policy: dict[str, int], telemetry: Telemetry) -> dict[str, int]:
    """The ceilings in force, computed by the law itself so the view never disagrees with a decision."""
    state = State(policy=policy, telemetry=telemetry)
    ceilings = {r: price_ceiling(state, r) for r in FLOWING}
    return {r: c for r, c in ceilings.items() if c}


# --- turning decisions into signed proposals -------------------------------------------------------


class Brain(Protocol):
    def turn(self, view: AgentView, world: World) -> list[Outgoing]: ...


@dataclass
class Trader:
    """A participant: one intent per tick from its strategy, signed with its own key."""

    strategy: Strategy
    signer: Signer  # the agent's own key, and no other
    run_id: str
    # This process is the agent's only producer; started on an empty ledger (a live agent would
    # start from the ledger's last nonce for it).
    nonces: Nonces = field(default_factory=Nonces)

    def turn(self, view: AgentView, world: World) -> list[Outgoing]:
        decision = self.strategy.choose(view)
        body = to_body(decision.intent, view)
        if body is None:
            return []
        pid = proposal_id(self.run_id, view.agent, view.tick, 0)
        provenance = clean_provenance(decision.provenance)
        signed = build(
            view.agent, body, view.tick, PROPOSAL_TTL_TICKS, self.signer, pid, self.nonces.next(), provenance
        )
        return [Outgoing(view.agent, 0, encode(signed), pid)]


@dataclass
class Adversary:
    """Sends the first few attacks of ``AdversarialStrategy`` each tick, through the same signing path
    (with a key the grid does not know when the attack asks for it, raw bytes when it is raw)."""

    strategy: AdversarialStrategy
    signer: Signer  # its own key: an adversary inside the grid is a participant like the others
    run_id: str
    victim_account: str
    nonces: Nonces = field(default_factory=Nonces)

    def turn(self, view: AgentView, world: World) -> list[Outgoing]:
        decided = world.last_nonce(view.agent)
        attacks = self.strategy.attacks(view, self.victim_account, decided or None)[:ATTACKS_PER_TICK]
        return [self._message(view, n, attack) for n, attack in enumerate(attacks)]

    def _message(self, view: AgentView, n: int, attack: Attack) -> Outgoing:
        if attack.raw is not None:
            return Outgoing(view.agent, n, attack.raw, None, attack.name, attack.expected_reason)
        assert attack.body is not None
        pid = proposal_id(self.run_id, view.agent, view.tick, n)
        signer = HmacSigner(WRONG_KEY) if attack.sign_with_wrong_key else self.signer
        nonce = attack.reuse_nonce or self.nonces.next()
        signed = build(
            view.agent, attack.body, view.tick, PROPOSAL_TTL_TICKS, signer, pid, nonce, {"source": "adversarial"}
        )
        return Outgoing(view.agent, n, encode(signed), pid, attack.name, attack.expected_reason)


# --- the loop --------------------------------------------------------------------------------------

Deliver = Callable[[str, int, list[Outgoing]], None]


@dataclass
class AgentLoop:
    """One agent's own loop: wait for a new grid tick, read the view, decide, deliver. Runs in a thread."""

    me: Identity
    brain: Brain
    database_url: str
    deliver: Deliver
    outbox: Outbox
    stop: threading.Event
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"agent-{self.me.agent}", daemon=True)
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)

    def _run(self) -> None:
        acted_tick = 0  # the genesis is tick 0; agents first act on tick 1
        try:
            world = World(self.database_url)
            try:
                while world.wait_tick_after(acted_tick, self.stop, IDLE_EXIT_S) is not None:
                    view = world.view(self.me)
                    self.deliver(self.me.agent, view.tick, self._turn(view, world))
                    acted_tick = view.tick
            finally:
                world.close()
        except Exception as exc:  # the database or the broker failed under this agent: it drops out
            logger.exception("agent loop failed", extra={"agent": self.me.agent, "tick": acted_tick})
            self.errors.append((self.me.agent, acted_tick, repr(exc)[:200]))
        finally:
            self.outbox.leave(self.me.agent)

    def _turn(self, view: AgentView, world: World) -> list[Outgoing]:
        """The brain's messages; a bug in a strategy costs its agent the turn, not the run."""
        try:
            return self.brain.turn(view, world)
        except Exception as exc:
            logger.exception("agent turn failed", extra={"agent": view.agent, "tick": view.tick})
            self.errors.append((view.agent, view.tick, repr(exc)[:200]))
            return []
