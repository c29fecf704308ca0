"""``gridgov simulate``: a scenario run end to end, then its summary from Postgres.

1. A namespace of its own: a database ``grid_run_<run id>`` (dropped and recreated) with the
   migrations, and topics under a fresh prefix (stale ones of the same run id deleted), so two runs
   never share state and can be compared by their head hash.
2. The validator as its own process (plus any ``extra_services``: the seam for sinks and dashboard).
3. The operator's genesis: registry, opening balances and policy from the scenario.
4. One independent loop per participant (``agents.runner``), and the operator's clock: per tick the
   meter entry, a simulated breaker resume when due, and the lockstep publication of the agents'
   turns (see ``agents.runner`` for why, and what ``free_running`` changes).
5. Once the validator has decided everything (its position reaches the last offset produced), the
   summary: decisions by kind and reason, trades, balances, shortfalls, breaker, head hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg import sql
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from agents.adversarial import AdversarialStrategy
from agents.gemini_strategy import GeminiStrategy
from agents.heuristic import HeuristicStrategy
from agents.meter import meter_proposal
from agents.runner import (
    Adversary,
    AgentLoop,
    Brain,
    Deliver,
    Identity,
    Outbox,
    Outgoing,
    Publisher,
    Sent,
    Trader,
)
from agents.scenario import ParticipantSpec, Scenario, ScenarioError
from agents.strategy import Decision, Strategy
from agents.view import AgentView
from connectors.gemini import GeminiClient, GeminiConfig
from connectors.kafka_admin import delete_topics, ensure_topics
from connectors.migrate import apply_migrations
from core.config import Settings
from core.tables import format_table
from schemas.codec import encode, key_fingerprint
from schemas.envelope import build
from schemas.keys import derive_key
from streams.verify import verify

logger = logging.getLogger(__name__)

TICKS_DEFAULT = 48
SEED_DEFAULT = 1
AUTO_RESUME_TICKS_DEFAULT = 3
TICK_TIMEOUT_S_DEFAULT = 90.0  # a Gemini turn can take three attempts of 20 s each
DECIDE_TIMEOUT_S = 60.0  # the validator decides a tick in milliseconds; this is for a stuck one
POLL_S = 0.01
SERVICE_STOP_TIMEOUT_S = 15.0
AGENT_JOIN_TIMEOUT_S = 5.0
OPERATOR_TTL_TICKS = 5
# Proposal ids are "<run>-<agent>-<tick>-<n>", at most 64 characters: 24 + 1 + 24 + 1 + 12 + 2.
RUN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")
RUN_ID_RULE = "1 to 24 characters: lowercase letters, digits and '-', starting with a letter or digit"
ADVERSARY = "mallory"
ADVERSARY_OPENING = {"energy": 1_000, "water": 5_000, "credits": 10_000}
# Services started beside the validator, with the run's GRID_DATABASE_URL and GRID_TOPIC_PREFIX:
# the seam for the sinks and the dashboard, e.g. ("sinks", (sys.executable, "-m", "gridgov.cli", "sinks")).
EXTRA_SERVICES: tuple[tuple[str, tuple[str, ...]], ...] = ()


class SimulationError(RuntimeError):
    pass


@dataclass(frozen=True)
class SimulationConfig:
    scenario: Scenario
    ticks: int = TICKS_DEFAULT
    seed: int = SEED_DEFAULT
    run_id: str | None = None  # default: "<scenario>-<seed>"
    adversarial: bool = False
    free_running: bool = False
    auto_resume_ticks: int = AUTO_RESUME_TICKS_DEFAULT  # 0: the breaker stays open once tripped
    gemini: GeminiConfig | None = None  # participants with strategy "auto" or "gemini" use it
    database_url: str | None = None  # default: a database of the run's own, recreated
    topic_prefix: str | None = None  # default: "<GRID_TOPIC_PREFIX>.<run id>.<random>"
    tick_timeout_s: float = TICK_TIMEOUT_S_DEFAULT
    progress: bool = True
    extra_services: tuple[tuple[str, tuple[str, ...]], ...] = EXTRA_SERVICES

    @property
    def effective_run_id(self) -> str:
        run_id = self.run_id or f"{self.scenario.name}-{self.seed}"
        if not RUN_ID.fullmatch(run_id):
            raise SimulationError(f"run id {run_id!r}: {RUN_ID_RULE} (choose one with --run-id)")
        return run_id


# --- namespace -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    run_id: str
    settings: Settings  # with the run's database and topic prefix

    @property
    def topic(self) -> str:
        return self.settings.topic("proposals")


def _database_name(run_id: str) -> str:
    return "grid_run_" + run_id.replace("-", "_")


def _recreate_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        # FORCE: a dashboard still connected to the previous run must not block the new one.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def prepare_namespace(config: SimulationConfig, settings: Settings) -> Namespace:
    run_id = config.effective_run_id
    database_url = config.database_url or _recreate_database(settings.database_url, _database_name(run_id))
    apply_migrations(database_url)
    prefix = config.topic_prefix
    if prefix is None:
        # Topic deletion is asynchronous in Kafka, so a run never reuses a name: a random suffix,
        # and the previous run's topics of the same id are deleted.
        stale = f"{settings.topic_prefix}.{run_id}"
        delete_topics(settings.kafka_bootstrap, stale)
        prefix = f"{stale}.{secrets.token_hex(3)}"
    ns_settings = settings.replace(topic_prefix=prefix, database_url_external=database_url)
    ensure_topics(ns_settings)
    return Namespace(run_id, ns_settings)


# --- services --------------------------------------------------------------------------------------


class Service:
    """A child process with its own log file; stopped by SIGTERM, then SIGKILL, by its pid only."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            # A session of its own: Ctrl-C in the terminal reaches us, and we stop it in order.
            self.process = subprocess.Popen(
                list(argv), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(SERVICE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("service did not stop on SIGTERM; killing it", extra={"service": self.name})
            self.process.kill()
            return self.process.wait(SERVICE_STOP_TIMEOUT_S)


def start_services(ns: Namespace, config: SimulationConfig, secret: bytes) -> list[Service]:
    """The validator (first) and the extra services, all pointed at the run's namespace."""
    env = {**os.environ, **ns.settings.as_env()}
    # Exit on its own if we die without stopping it: longer than any wait of ours between messages.
    idle_exit_s = str(int(max(config.tick_timeout_s, DECIDE_TIMEOUT_S) * 4))
    validator = (sys.executable, "-m", "gridgov.cli", "validator", "--metrics-port", "0", "--idle-exit-s", idle_exit_s)
    logs = ns.settings.home / "runs" / ns.run_id
    # Only the validator verifies signatures, so only it is given the secret the agents sign with.
    validator_env = {**os.environ, **ns.settings.replace(key_secret=secret.hex()).as_env()}
    services = [Service("validator", validator, validator_env, logs / "validator.log")]
    return services + [Service(name, argv, env, logs / f"{name}.log") for name, argv in config.extra_services]


# --- the operator's clock --------------------------------------------------------------------------


def _participant(secret: bytes, spec: ParticipantSpec) -> dict[str, Any]:
    return {
        "agent": spec.agent,
        "key_fingerprint": key_fingerprint(derive_key(secret, spec.agent)),
        "accounts": [spec.account],
        "kind": spec.kind,
        "emits_carbon": spec.emits_carbon,
        "critical_load": spec.critical_load,
    }


def genesis_body(scenario: Scenario, secret: bytes, specs: list[ParticipantSpec]) -> dict[str, Any]:
    operator = {
        "agent": scenario.operator,
        "role": "operator",
        "key_fingerprint": key_fingerprint(derive_key(secret, scenario.operator)),
        "accounts": [f"{scenario.operator}:main"],
        "kind": "operator",
    }
    balances = [
        {"account": s.account, "resource": r, "quantity": q} for s in specs for r, q in sorted(s.opening.items()) if q
    ]
    participants = [operator, *(_participant(secret, s) for s in specs)]
    return {"kind": "genesis", "participants": participants, "balances": balances, "policy": scenario.policy}


class Clock:
    """The operator: genesis, a meter entry per tick, simulated resumes, and lockstep publication."""

    def __init__(self, config: SimulationConfig, ns: Namespace, secret: bytes, outbox: Outbox, validator: Service):
        self.config, self.ns, self.secret, self.outbox, self.validator = config, ns, secret, outbox, validator
        self.publisher = Publisher(ns.settings.kafka_bootstrap, ns.topic)
        self.conn = psycopg.connect(ns.settings.database_url, autocommit=True, connect_timeout=10)
        self.sent: list[Sent] = []
        self.missed: list[tuple[str, int]] = []
        self.breaker_open_since: int | None = None
        self.resumes: list[int] = []

    def close(self) -> None:
        self.conn.close()

    @property
    def operator(self) -> str:
        return self.config.scenario.operator

    def _operator_message(self, body: dict[str, Any], tick: int, pid: str, ttl: int) -> Outgoing:
        signed = build(self.operator, body, tick, ttl, self.secret, pid, {"source": "operator"})
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
        deadline = time.monotonic() + DECIDE_TIMEOUT_S
        while self.decided_offset() < next_offset:
            if not self.validator.alive():
                raise SimulationError(f"the validator exited; see {self.validator.log_path}")
            if time.monotonic() > deadline:
                raise SimulationError(f"offset {next_offset - 1} undecided after {DECIDE_TIMEOUT_S} s")
            time.sleep(POLL_S)

    def _send_and_check(self, message: Outgoing) -> None:
        """Publish one operator proposal, wait for its decision, and fail loudly if it was rejected."""
        [sent] = self._publish([message])
        self.wait_decided(sent.offset + 1)
        row = self.conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE source_offset = %s", (sent.offset,)
        ).fetchone()
        if row is not None:
            raise SimulationError(f"operator proposal {message.proposal_id} rejected: {row[0]}: {row[1]}")

    def genesis(self, specs: list[ParticipantSpec]) -> None:
        body = genesis_body(self.config.scenario, self.secret, specs)
        self._send_and_check(self._operator_message(body, 0, f"{self.ns.run_id}-genesis", OPERATOR_TTL_TICKS))

    def tick(self, tick: int) -> None:
        """Resume when due, meter entry, then publish the agents' turns (lockstep) or wait for them."""
        self.outbox.open(tick)
        self._resume_if_due(tick)
        meter = meter_proposal(self.config.scenario, self.config.seed, tick, self.ns.run_id, self.secret)
        self._send_and_check(Outgoing(self.operator, 0, encode(meter), meter["id"]))
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
        body = {"kind": "breaker_resume", "reason": f"SIMULATED operator resume (auto-resume after {k} ticks)"}
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


# --- the agents ------------------------------------------------------------------------------------


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
    name: str, spec: ParticipantSpec, config: SimulationConfig, ns: Namespace, secret: bytes, cast: Cast
) -> Brain:
    seed = agent_seed(config.seed, spec.agent)
    if name == "adversarial":
        return Adversary(AdversarialStrategy(seed), secret, ns.run_id, _victim(config.scenario))
    strategy: Strategy = HeuristicStrategy(seed)
    if name == "gemini" and config.gemini is not None:
        client = GeminiClient(config.gemini)
        cast.clients.append(client)
        strategy = GeminiStrategy(client, fallback=HeuristicStrategy(seed))
    counted = cast.strategies[spec.agent] = CountingStrategy(strategy)
    return Trader(counted, secret, ns.run_id)


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

    publisher = Publisher(ns.settings.kafka_bootstrap, ns.topic)  # the agent's own producer
    return lambda agent, tick, messages: outbox.submit(agent, tick, [], publisher.publish(messages))


def cast_agents(
    cast: Cast,
    config: SimulationConfig,
    ns: Namespace,
    secret: bytes,
    outbox: Outbox,
    plan: dict[str, str],
    specs: list[ParticipantSpec],
    stop: threading.Event,
) -> None:
    """One loop per participant into ``cast``, not started yet."""
    for spec in specs:
        brain = _brain(plan[spec.agent], spec, config, ns, secret, cast)
        deliver = _deliver(config, ns, outbox)
        me = Identity(spec, config.scenario)
        cast.loops.append(AgentLoop(me, brain, ns.settings.database_url, deliver, outbox, stop))


# --- the run ---------------------------------------------------------------------------------------


def run(config: SimulationConfig, settings: Settings, secret: bytes) -> Summary:
    """Run the scenario in a fresh namespace and return its summary; raises ``SimulationError``."""
    if config.ticks < 1:
        raise SimulationError("a run needs at least one tick")
    specs = list(config.scenario.participants) + ([adversary_spec(config.scenario)] if config.adversarial else [])
    plan = strategy_plan(config, specs)
    started = time.monotonic()
    ns = prepare_namespace(config, settings)
    logger.info("simulation namespace ready", extra={"run_id": ns.run_id, "topic": ns.topic})
    outbox = Outbox((s.agent for s in specs), order_salt=f"{config.seed}")
    stop = threading.Event()
    cast = Cast()
    # Undone in reverse: agents halted first, the validator stopped last, whatever failed on the way.
    with contextlib.ExitStack() as cleanup:
        services = start_services(ns, config, secret)
        for service in services:
            cleanup.callback(service.stop)
        clock = Clock(config, ns, secret, outbox, services[0])
        cleanup.callback(clock.close)
        cleanup.callback(cast.close)
        cleanup.callback(_halt, cast, stop)
        clock.genesis(specs)
        cast_agents(cast, config, ns, secret, outbox, plan, specs, stop)
        for loop in cast.loops:
            loop.start()
        _run_ticks(config, clock)
        clock.drain()
    return collect(ns, config, clock, cast, time.monotonic() - started)


def _halt(cast: Cast, stop: threading.Event) -> None:
    stop.set()
    for loop in cast.loops:
        loop.join(AGENT_JOIN_TIMEOUT_S)


def _run_ticks(config: SimulationConfig, clock: Clock) -> None:
    ticks = range(1, config.ticks + 1)
    with logging_redirect_tqdm(), tqdm(ticks, desc=clock.ns.run_id, unit="tick", disable=not config.progress) as bar:
        for tick in bar:
            clock.tick(tick)
            bar.set_postfix(breaker="OPEN" if clock.breaker_open_since is not None else "closed", refresh=False)


# --- the summary -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    seq: int
    tick: int
    opened: bool
    by: str
    reason: str


@dataclass
class Summary:
    run_id: str
    scenario: str
    seed: int
    ticks: int
    mode: str
    database_url: str
    topic_prefix: str
    elapsed_s: float
    head_seq: int
    head_hash: str
    verify_problems: list[str]
    accepted_by_kind: dict[str, int]
    rejected_by_reason: dict[str, int]
    trades: dict[str, tuple[int, int, int]]  # resource -> (trades, units, millicredits)
    offers: dict[str, int]  # opened, accepted, cancelled, expired, still open
    balances: dict[str, dict[str, int]]  # agent -> resource -> units
    shortfall_total: dict[str, dict[str, int]]  # agent -> resource -> units unmet over the run
    critical: list[str]
    breaker: list[BreakerEvent]
    simulated_resume_ticks: list[int]
    attacks: list[tuple[str, str, str, int]]  # (attack, expected, actual, count)
    strategy_sources: dict[str, int]
    missed_turns: list[tuple[str, int]]
    agent_errors: list[tuple[str, int, str]]
    not_reproducible_because: list[str]

    def render(self) -> str:
        return render(self)


def _rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _trades(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int, int]]:
    # An accept's postings are, in order: seller -units, buyer +units, buyer -price, seller +price.
    rows = _rows(
        conn,
        "SELECT good.resource, count(*), sum(good.amount), sum(paid.amount) FROM ledger l "
        "JOIN postings good ON good.seq = l.seq AND good.idx = 1 "
        "JOIN postings paid ON paid.seq = l.seq AND paid.idx = 3 "
        "WHERE l.kind = 'accept' GROUP BY good.resource ORDER BY good.resource",
    )
    return {r: (int(n), int(units), int(paid)) for r, n, units, paid in rows}


def _offers(accepted_by_kind: dict[str, int], still_open: int) -> dict[str, int]:
    opened, accepted, cancelled = (accepted_by_kind.get(k, 0) for k in ("offer", "accept", "cancel"))
    expired = opened - accepted - cancelled - still_open
    return {"opened": opened, "accepted": accepted, "cancelled": cancelled, "expired": expired, "open": still_open}


def _effects(conn: psycopg.Connection[Any], kinds: tuple[str, ...]) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(seq, tick, agent, effect) of every effect of entries of ``kinds``, in ledger order."""
    rows = _rows(
        conn, "SELECT seq, tick, agent, effects_json FROM ledger WHERE kind = ANY(%s) ORDER BY seq", list(kinds)
    )
    return [(seq, tick, agent, e) for seq, tick, agent, effects in rows for e in orjson.loads(effects)]


def _shortfall_total(conn: psycopg.Connection[Any], owner: dict[str, str]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for _, _, _, effect in _effects(conn, ("meter",)):
        if effect["t"] == "shortfall":
            for account, resource, units in effect["units"]:
                total.setdefault(owner[account], Counter())[resource] += units
    return {agent: dict(sorted(units.items())) for agent, units in sorted(total.items())}


def _breaker(conn: psycopg.Connection[Any]) -> list[BreakerEvent]:
    return [
        BreakerEvent(seq, tick, e["open"], e["by"], e["reason"])
        for seq, tick, _, e in _effects(conn, ("meter", "breaker_trip", "breaker_resume"))
        if e["t"] == "breaker"
    ]


def _attacks(conn: psycopg.Connection[Any], sent: list[Sent]) -> list[tuple[str, str, str, int]]:
    attacks = {s.offset: (s.message.attack, s.message.expected_reason) for s in sent if s.message.attack}
    rejected = dict(
        _rows(conn, "SELECT source_offset, reason_code FROM rejections WHERE source_offset = ANY(%s)", list(attacks))
    )
    outcomes: Counter[tuple[str, str, str]] = Counter()
    for offset, (attack, expected) in attacks.items():
        outcomes[(str(attack), expected or "ACCEPTED", rejected.get(offset, "ACCEPTED"))] += 1
    return [(a, e, r, n) for (a, e, r), n in sorted(outcomes.items())]


def _reproducibility(config: SimulationConfig, clock: Clock, cast: Cast) -> list[str]:
    reasons = []
    if config.free_running:
        reasons.append("free-running: agents published in wire order")
    if cast.clients:
        reasons.append("Gemini agents: a model's answers are not reproducible")
    if clock.missed or clock.outbox.late:
        reasons.append(f"{len(clock.missed)} turns missed the {config.tick_timeout_s:g} s tick timeout")
    if any(loop.errors for loop in cast.loops):
        reasons.append("agent turns failed (see agent errors)")
    return reasons


def collect(ns: Namespace, config: SimulationConfig, clock: Clock, cast: Cast, elapsed_s: float) -> Summary:
    url = ns.settings.database_url
    report = verify(url)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        assert head is not None, "the genesis entry was checked when it was decided"
        accepted = dict(_rows(conn, "SELECT kind, count(*) FROM ledger GROUP BY kind ORDER BY kind"))
        rejected = dict(_rows(conn, "SELECT reason_code, count(*) FROM rejections GROUP BY 1 ORDER BY 2 DESC, 1"))
        owner = {
            a: agent for agent, accounts in _rows(conn, "SELECT agent, accounts FROM participants") for a in accounts
        }
        balances: dict[str, dict[str, int]] = {}
        for account, resource, balance in _rows(
            conn, "SELECT account, resource, balance FROM world_state ORDER BY 1, 2"
        ):
            if account in owner:
                balances.setdefault(owner[account], {})[resource] = balance
        still_open = _rows(conn, "SELECT count(*) FROM open_offers")[0][0]
        critical = [a for (a,) in _rows(conn, "SELECT agent FROM participants WHERE critical_load ORDER BY agent")]
        summary = Summary(
            run_id=ns.run_id,
            scenario=config.scenario.name,
            seed=config.seed,
            ticks=config.ticks,
            mode="free-running" if config.free_running else "lockstep",
            database_url=url,
            topic_prefix=ns.settings.topic_prefix,
            elapsed_s=elapsed_s,
            head_seq=head[0],
            head_hash=bytes(head[1]).hex(),
            verify_problems=[f"{p.where}: {p.reason}: {p.detail}" for p in report.problems],
            accepted_by_kind=accepted,
            rejected_by_reason=rejected,
            trades=_trades(conn),
            offers=_offers(accepted, still_open),
            balances=balances,
            shortfall_total=_shortfall_total(conn, owner),
            critical=critical,
            breaker=_breaker(conn),
            simulated_resume_ticks=clock.resumes,
            attacks=_attacks(conn, clock.all_sent),
            strategy_sources=dict(sum((s.sources for s in cast.strategies.values()), Counter())),
            missed_turns=clock.missed,
            agent_errors=[e for loop in cast.loops for e in loop.errors],
            not_reproducible_because=_reproducibility(config, clock, cast),
        )
    return summary


def _section(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return f"\n{title}\n" + (format_table(headers, rows) if rows else "  (none)")


def render(s: Summary) -> str:
    resources = ("energy", "water", "credits")
    decided = sum(s.accepted_by_kind.values()) + sum(s.rejected_by_reason.values())
    parts = [
        f"Simulation {s.run_id}: scenario {s.scenario}, seed {s.seed}, {s.ticks} ticks, {s.mode}, "
        f"{decided} proposals decided in {s.elapsed_s:.1f} s",
        f"  database {s.database_url}   topics {s.topic_prefix}.*",
        _section("Accepted by kind", ("KIND", "COUNT"), sorted(s.accepted_by_kind.items())),
        _section("Rejected by reason", ("REASON", "COUNT"), list(s.rejected_by_reason.items())),
        _section(
            "Trades by resource (accepted offers)",
            ("RESOURCE", "TRADES", "UNITS", "CREDITS PAID (mc)"),
            [(r, *t) for r, t in s.trades.items()],
        ),
        "  offers: " + ", ".join(f"{k} {v}" for k, v in s.offers.items()),
        _section(
            "Final balances (energy Wh, water l, credits mc)",
            ("AGENT", *(r.upper() for r in resources)),
            [(a, *(b.get(r, 0) for r in resources)) for a, b in sorted(s.balances.items())],
        ),
        _section(
            "Unmet demand over the run",
            ("AGENT", "ENERGY Wh", "WATER l", "CRITICAL"),
            [
                (a, u.get("energy", 0), u.get("water", 0), "yes" if a in s.critical else "")
                for a, u in s.shortfall_total.items()
            ],
        ),
        _section("Circuit breaker", ("SEQ", "TICK", "EVENT", "BY", "REASON"), _breaker_rows(s)),
        f"  CIRCUIT_OPEN rejections: {s.rejected_by_reason.get('CIRCUIT_OPEN', 0)}",
    ]
    if s.attacks:
        parts.append(_section("Adversarial attempts", ("ATTACK", "EXPECTED", "ACTUAL", "COUNT"), s.attacks))
    parts.append("  decisions by source: " + ", ".join(f"{k} {v}" for k, v in sorted(s.strategy_sources.items())))
    if s.missed_turns or s.agent_errors:
        parts.append(f"  missed turns: {len(s.missed_turns)}, failed agent turns: {len(s.agent_errors)}")
    parts += ["", f"Ledger head: seq {s.head_seq}, hash {s.head_hash}", _verdicts(s)]
    return "\n".join(parts)


def _verdicts(s: Summary) -> str:
    checked = "ok (hash chain, conservation, world_state, offsets)"
    if s.verify_problems:
        checked = f"{len(s.verify_problems)} PROBLEMS, first: {s.verify_problems[0]}"
    reproducible = "yes: the same scenario and seed give the same head hash"
    if s.not_reproducible_because:
        reproducible = "no (" + "; ".join(s.not_reproducible_because) + ")"
    return f"  verify: {checked}\n  reproducible: {reproducible}"


def _breaker_rows(s: Summary) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for e in s.breaker:
        simulated = not e.opened and e.reason.startswith("SIMULATED")
        event = "TRIP" if e.opened else ("RESUME (simulated operator)" if simulated else "RESUME")
        rows.append((e.seq, e.tick, event, e.by, e.reason))
    return rows
