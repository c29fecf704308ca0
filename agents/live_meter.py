"""The live grid's clock: the operator's metering service, one meter entry every ``tick_s`` of wall time.

It reuses the simulation's pieces: ``operator_clock.genesis_body`` for the ledger's first entry,
``meter.meter_proposal`` for each tick (with the scenario's profiles looping, ``meter.cycle_ticks``)
and ``runner.Publisher`` for the broker. Unlike the simulation's clock it never waits for agents: they
run free and see each tick when the validator has decided it. It holds the meter's key and, for the
genesis only, the operator's: it is the operator's service.

Crash-only: a failure it cannot handle ends the process, and the supervisor restarts it. On start it
reads where the grid is (its tick, the meter's last nonce), so a restart resumes at the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from agents.live import RUN_ID, metered
from agents.meter import cycle_ticks, meter_proposal
from agents.operator_clock import OPERATOR_TTL_TICKS, genesis_body
from agents.runner import Outgoing, Publisher
from agents.scenario import Scenario
from connectors.readmodel.agents import grid_tick, read_only_connection
from connectors.readmodel.ledger import last_nonce, participants
from core.agent_keys import AgentKey
from core.config import Settings
from core.process import WaitTimeoutError, poll_until
from schemas.codec import encode
from schemas.envelope import Nonces, build
from schemas.signing import Ed25519Signer

logger = logging.getLogger(__name__)

DECIDE_TIMEOUT_S = 60.0  # the validator decides in milliseconds; this covers its start and restarts
DECIDE_POLL_S = 0.05


class MeterError(RuntimeError):
    """The grid cannot be clocked: no genesis is possible, or the validator refused it."""


@dataclass(frozen=True)
class Genesis:
    """What founding an empty ledger takes: the operator's key and every founder's key fingerprint."""

    operator: Ed25519Signer
    fingerprints: dict[str, str]  # agent (the meter and the scenario's participants) -> fingerprint


class MeterService:
    def __init__(
        self,
        settings: Settings,
        scenario: Scenario,
        seed: int,
        tick_s: float,
        meter_key: AgentKey,
        genesis: Genesis | None,
    ) -> None:
        if meter_key.agent != scenario.meter:
            raise MeterError(f"the key file is {meter_key.agent!r}'s; the scenario's meter is {scenario.meter!r}")
        self.settings, self.scenario, self.seed, self.tick_s = settings, scenario, seed, tick_s
        self.meter_key, self.genesis = meter_key, genesis
        self.topic = settings.topic("proposals")
        self.conn = read_only_connection(settings.reader_database_url)
        self.publisher = Publisher(settings.kafka("producer"), self.topic)

    def close(self) -> None:
        self.conn.close()

    def run(self, stop: threading.Event, ticks_max: int) -> int:
        """Meter until ``stop`` or ``ticks_max`` entries; return how many were accepted.

        1. Found the ledger if it has no genesis yet.
        2. Each round: wait for the round's wall-clock start (a late round starts at once, and the
           rounds after it are spaced from then: no burst to catch up).
        3. Read the grid's tick and registry, sign the meter entry of the next tick, publish it.
        4. Wait (bounded) for the validator's decision; a refusal is logged and the next round tries
           the tick again.
        """
        if grid_tick(self.conn) < 0:
            self._found()
        nonces = Nonces()
        cycle = cycle_ticks(self.scenario)
        accepted = 0
        due_s = time.monotonic()
        for _ in range(ticks_max):
            if stop.wait(max(0.0, due_s - time.monotonic())):
                break
            due_s = max(due_s + self.tick_s, time.monotonic())
            tick = grid_tick(self.conn) + 1
            grid = metered(self.scenario, participants(self.conn))
            nonce = nonces.next(last_nonce(self.conn, self.scenario.meter))
            signer = self.meter_key.signer
            proposal = meter_proposal(grid, self.seed, tick, RUN_ID, signer, nonce, cycle)
            refused = self._publish_and_wait(Outgoing(self.scenario.meter, 0, encode(proposal), proposal["id"]))
            if refused is None:
                accepted += 1
                logger.info("metered", extra={"tick": tick, "readings": len(proposal["body"]["readings"])})
            else:
                logger.warning("meter entry refused", extra={"tick": tick, "reason": refused})
        return accepted

    def _found(self) -> None:
        if self.genesis is None:
            raise MeterError("the ledger has no genesis and this meter was given no --registry to found it")
        operator = self.scenario.operator
        specs = list(self.scenario.participants)
        missing = sorted({self.scenario.meter, *(s.agent for s in specs)} - self.genesis.fingerprints.keys())
        if missing:
            raise MeterError(f"the registry file has no key fingerprint for {missing}")
        body = genesis_body(self.scenario, self.genesis.operator.public_key, self.genesis.fingerprints, specs)
        nonce = Nonces().next(last_nonce(self.conn, operator))
        signed = build(
            operator,
            body,
            0,
            OPERATOR_TTL_TICKS,
            self.genesis.operator,
            f"{RUN_ID}-genesis",
            nonce,
            {"source": "operator"},
        )
        refused = self._publish_and_wait(Outgoing(operator, 0, encode(signed), signed["id"]))
        if refused is not None and grid_tick(self.conn) < 0:
            raise MeterError(f"the validator refused the genesis: {refused}")
        logger.info("ledger founded", extra={"participants": len(specs), "scenario": self.scenario.name})

    def _publish_and_wait(self, message: Outgoing) -> str | None:
        """Publish ``message``; None once accepted, else the refusal (or why no decision came)."""
        [sent] = self.publisher.publish([message])
        try:
            poll_until(
                lambda: self._next_offset() > sent.offset,
                DECIDE_TIMEOUT_S,
                f"the validator to decide offset {sent.offset}",
                interval_s=DECIDE_POLL_S,
            )
        except WaitTimeoutError as exc:
            return str(exc)
        row: Any = self.conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE source_offset = %s", (sent.offset,)
        ).fetchone()
        return None if row is None else f"{row[0]}: {row[1]}"

    def _next_offset(self) -> int:
        try:
            row = self.conn.execute(
                "SELECT max(next_offset) FROM consumer_position WHERE topic = %s", (self.topic,)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0  # not migrated yet: nothing is decided
        return int(row[0]) if row and row[0] is not None else 0
