"""The operator's clock: the genesis, then per tick a simulated breaker resume when due, the meter
entry, and the lockstep publication of the agents' turns (see ``agents.runner`` for why, and what
``free_running`` changes). Every operator and meter proposal waits for its decision and must be
accepted. The clock holds two keys, each only for its own kinds: the scenario operator's Ed25519 key
(genesis, resumes) and the meter's HMAC key (meter entries)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from agents.meter import meter_proposal
from agents.namespace import Namespace
from agents.runner import Outbox, Outgoing, Publisher, Sent
from agents.scenario import ParticipantSpec, Scenario
from agents.simulation_config import SimulationConfig, SimulationError
from connectors.readmodel.ledger import grid_status
from core.process import InfraError, Service, poll_until
from schemas.codec import encode
from schemas.envelope import Nonces, build
from schemas.signing import Ed25519Signer, HmacSigner

logger = logging.getLogger(__name__)

DECIDE_TIMEOUT_S = 60.0  # the validator decides a tick in milliseconds; this is for a stuck one
POLL_S = 0.01
OPERATOR_TTL_TICKS = 5


def _participant(fingerprints: dict[str, str], spec: ParticipantSpec) -> dict[str, Any]:
    return {
        "agent": spec.agent,
        "key_fingerprint": fingerprints[spec.agent],
        "accounts": [spec.account],
        "kind": spec.kind,
        "emits_carbon": spec.emits_carbon,
        "critical_load": spec.critical_load,
    }


def genesis_body(
    scenario: Scenario, operator_key: str, fingerprints: dict[str, str], specs: list[ParticipantSpec]
) -> dict[str, Any]:
    """The registry (the operator by public key, the meter and the participants by key fingerprint),
    the opening balances and the scenario's policy."""
    operator = {
        "agent": scenario.operator,
        "role": "operator",
        "public_key": operator_key,
        "accounts": [f"{scenario.operator}:main"],
        "kind": "operator",
    }
    meter = {
        "agent": scenario.meter,
        "role": "meter",
        "key_fingerprint": fingerprints[scenario.meter],
        "accounts": [f"{scenario.meter}:main"],
        "kind": "meter",
    }
    balances = [
        {"account": s.account, "resource": r, "quantity": q} for s in specs for r, q in sorted(s.opening.items()) if q
    ]
    participants = [operator, meter, *(_participant(fingerprints, s) for s in specs)]
    return {"kind": "genesis", "participants": participants, "balances": balances, "policy": scenario.policy}


class Clock:
    """The operator: genesis, a meter entry per tick, simulated resumes, and lockstep publication."""

    def __init__(
        self,
        config: SimulationConfig,
        ns: Namespace,
        operator: Ed25519Signer,
        meter: HmacSigner,
        outbox: Outbox,
        validator: Service,
    ):
        self.config, self.ns, self.outbox, self.validator = config, ns, outbox, validator
        self.operator_signer, self.meter_signer = operator, meter
        self.publisher = Publisher(ns.settings.kafka("producer"), ns.topic)
        self.conn = psycopg.connect(ns.settings.database_url, autocommit=True, connect_timeout=10)
        self.sent: list[Sent] = []
        self.missed: list[tuple[str, int]] = []
        self.breaker_open_since: int | None = None
        self.resumes: list[int] = []
        # The clock is the run's only producer for the operator and the meter, on an empty ledger.
        self.nonces, self.meter_nonces = Nonces(), Nonces()

    def close(self) -> None:
        self.conn.close()

    @property
    def operator(self) -> str:
        return self.config.scenario.operator

    def _operator_message(self, body: dict[str, Any], tick: int, pid: str, ttl: int) -> Outgoing:
        nonce = self.nonces.next()
        signed = build(self.operator, body, tick, ttl, self.operator_signer, pid, nonce, {"source": "operator"})
        return Outgoing(self.operator, 0, encode(signed), pid)

    def _publish(self, messages: list[Outgoing]) -> list[Sent]:
        sent = self.publisher.publish(messages)
        self.sent += sent
        return sent

    def decided_offset(self) -> int:
        row = self.conn.execute(
            "SELECT next_offset FROM consumer_position WHERE topic = %s", (self.ns.topic,)
        ).fetchone()
        return int(row[0]) if row else 0

    def wait_decided(self, next_offset: int) -> None:
        """Until the validator's committed position reaches ``next_offset``, bounded."""
        try:
            poll_until(
                lambda: self.decided_offset() >= next_offset,
                DECIDE_TIMEOUT_S,
                f"the validator to decide offset {next_offset - 1}",
                alive=self.validator.alive,
                interval_s=POLL_S,
            )
        except InfraError as exc:  # the command reports a SimulationError, with the log to read
            raise SimulationError(f"{exc}; see {self.validator.log_path}") from exc

    def _send_and_check(self, message: Outgoing) -> None:
        """Publish one operator proposal, wait for its decision, and fail loudly if it was rejected."""
        [sent] = self._publish([message])
        self.wait_decided(sent.offset + 1)
        row = self.conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE source_offset = %s", (sent.offset,)
        ).fetchone()
        if row is not None:
            raise SimulationError(f"operator proposal {message.proposal_id} rejected: {row[0]}: {row[1]}")

    def genesis(self, specs: list[ParticipantSpec], fingerprints: dict[str, str]) -> None:
        body = genesis_body(self.config.scenario, self.operator_signer.public_key, fingerprints, specs)
        self._send_and_check(self._operator_message(body, 0, f"{self.ns.run_id}-genesis", OPERATOR_TTL_TICKS))

    def tick(self, tick: int) -> None:
        """Resume when due, meter entry, then publish the agents' turns (lockstep) or wait for them."""
        self.outbox.open(tick)
        self._resume_if_due(tick)
        nonce = self.meter_nonces.next()
        scenario = self.config.scenario
        meter = meter_proposal(scenario, self.config.seed, tick, self.ns.run_id, self.meter_signer, nonce)
        self._send_and_check(Outgoing(scenario.meter, 0, encode(meter), meter["id"]))
        self._note_breaker(tick)
        messages, missing = self.outbox.close(self.config.tick_timeout_s)
        if missing:
            logger.warning("agents missed the tick", extra={"tick": tick, "agents": missing})
        self.missed += [(agent, tick) for agent in missing]
        self._publish(messages)

    def _note_breaker(self, tick: int) -> None:
        row = self.conn.execute("SELECT breaker_open FROM grid_status").fetchone()
        is_open = bool(row and row[0])
        if not is_open:
            self.breaker_open_since = None
        elif self.breaker_open_since is None:
            self.breaker_open_since = tick

    def _resume_if_due(self, tick: int) -> None:
        """Before the meter entry of ``tick``, so every agent's view of ``tick`` shows the breaker closed."""
        k = self.config.auto_resume_ticks
        since = self.breaker_open_since
        if not k or since is None or tick - since < k:
            return
        status = grid_status(self.conn)
        assert status is not None and status["breaker_open"], "the breaker was seen open at this tick"
        reason = f"SIMULATED operator resume (auto-resume after {k} ticks)"
        body = {"kind": "breaker_resume", "reason": reason, "trip_seq": status["breaker_trip_seq"]}
        self._send_and_check(self._operator_message(body, tick - 1, f"{self.ns.run_id}-resume-{tick}", 1))
        self.breaker_open_since = None
        self.resumes.append(tick)

    @property
    def all_sent(self) -> list[Sent]:
        """Everything produced in the run: by the clock, and by free-running agents themselves."""
        return self.sent + self.outbox.sent_by_agents

    def drain(self) -> None:
        """Until the validator has decided every message produced (consumer lag 0)."""
        self.wait_decided(max((s.offset for s in self.all_sent), default=-1) + 1)
