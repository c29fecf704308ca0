"""One participant of the live grid, as a process of its own that holds only its own key file.

Free-running: it waits for the grid tick to move (the meter's entries, decided by the validator),
reads its own view, asks its strategy for one intent and publishes the signed proposal at once. No
lockstep, no outbox: the validator's topic order is the only order. It is the simulation's loop
(``runner.World``, ``runner.Trader``, ``runner.Publisher``) without the publication clock.

Joining and leaving: before each turn it reads its own registry row. Not registered yet (a
``participants add`` still undecided), suspended, or not a participant (a meter's key): it idles,
says so once, and keeps watching. The law refuses a suspended agent anyway; idling saves the grid the
proposals. Its nonces start above the last one the ledger decided for it, so a restarted process never reuses one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agents.book_strategy import BookStrategy
from agents.heuristic import HeuristicStrategy
from agents.live import PARTICIPANT_ROLE, RUN_ID, live_spec
from agents.meter import cycle_ticks
from agents.runner import Identity, Publisher, Trader, World
from agents.scenario import Scenario
from agents.strategy import Strategy
from agents.wiring import agent_seed
from core.agent_keys import AgentKey
from core.config import Settings
from schemas.envelope import Nonces

logger = logging.getLogger(__name__)

TICK_WAIT_S = 30.0  # one wait for the next tick; the loop then checks for a stop and waits again
# Live ticks are seconds apart: a tenth of a second late costs nothing, and a dozen agents polling the
# database at the simulation's 50 Hz would cost the validator's host real CPU.
TICK_POLL_S = 0.1
OFFERS_MARKET = "offers"


def strategy_for(market: str, seed: int, agent: str) -> Strategy:
    """The heuristic for take-it-or-leave-it offers, the book strategy for the order-book markets."""
    return HeuristicStrategy(agent_seed(seed, agent)) if market == OFFERS_MARKET else BookStrategy()


class LiveAgent:
    def __init__(self, settings: Settings, scenario: Scenario, key: AgentKey, market: str, seed: int) -> None:
        self.agent, self.scenario, self.key = key.agent, scenario, key
        self.strategy = strategy_for(market, seed, key.agent)
        self.world = World(settings.reader_database_url)
        self.publisher = Publisher(settings.kafka("producer"), settings.topic("proposals"))
        self.idle_reason: str | None = None

    def close(self) -> None:
        self.world.close()

    def run(self, stop: threading.Event, rounds_max: int) -> int:
        """Act on each new tick until ``stop`` or ``rounds_max`` waits; return the proposals sent.

        1. Wait (bounded) for a grid tick above the last one acted on.
        2. Read the own registry row: idle while unregistered or suspended.
        3. Read the view, let the strategy decide, sign with the own key, publish.
        """
        acting: tuple[Identity, Trader] | None = None  # made on the first tick it may trade
        acted_tick = max(self.world.grid_tick(), 0)  # the genesis is tick 0; agents act from tick 1 on
        sent = 0
        for _ in range(rounds_max):
            tick = self.world.wait_tick_after(acted_tick, stop, TICK_WAIT_S, TICK_POLL_S)
            if stop.is_set():
                break
            if tick is None:
                continue
            acted_tick = tick
            row = self._registration()
            if row is None or row["suspended"] or row["role"] != PARTICIPANT_ROLE:
                self._idle("not registered" if row is None else "suspended" if row["suspended"] else row["role"], tick)
                continue
            if self.idle_reason is not None:
                logger.info("trading", extra={"agent": self.agent, "tick": tick})
                self.idle_reason = None
            if acting is None:
                spec = live_spec(self.scenario, self.agent, row["kind"])
                me = Identity(spec, self.scenario, cycle_ticks(self.scenario))
                acting = (me, Trader(self.strategy, self.key.signer, RUN_ID, Nonces()))
            sent += self._turn(*acting, tick)
        return sent

    def _turn(self, me: Identity, trader: Trader, tick: int) -> int:
        view = self.world.view(me)
        # Above what the ledger decided for us: a restart, or a rejected duplicate, resyncs here.
        trader.nonces.last = max(trader.nonces.last, self.world.last_nonce(self.agent))
        messages = trader.turn(view, self.world)
        if messages:
            self.publisher.publish(messages)
        logger.debug("turn", extra={"agent": self.agent, "tick": tick, "proposals": len(messages)})
        return len(messages)

    def _registration(self) -> dict[str, Any] | None:
        row = self.world.conn.execute(
            "SELECT kind, suspended, role FROM participants WHERE agent = %s", (self.agent,)
        ).fetchone()
        return None if row is None else {"kind": row[0], "suspended": bool(row[1]), "role": row[2]}

    def _idle(self, reason: str, tick: int) -> None:
        if self.idle_reason != reason:
            logger.warning("idling", extra={"agent": self.agent, "tick": tick, "reason": reason})
        self.idle_reason = reason
