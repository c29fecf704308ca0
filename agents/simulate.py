"""``gridgov simulate``: a scenario run end to end, then its summary from Postgres.

1. A namespace of its own (``agents.namespace``), so two runs never share state and can be compared
   by their head hash.
2. The validator as its own process (plus any ``extra_services``: the seam for sinks and dashboard).
3. The operator's genesis: registry, opening balances and policy from the scenario. The run is the
   validator's host: it derives each participant's and the meter's key from the root secret and
   hands each loop only its own; the operator signs with its own Ed25519 key from GRID_HOME.
4. One independent loop per participant (``agents.wiring``), and the operator's clock
   (``agents.operator_clock``): per tick the meter entry, a simulated breaker resume when due, and
   the lockstep publication of the agents' turns.
5. Once the validator has decided everything (its position reaches the last offset produced), the
   summary (``agents.summary``): decisions by kind and reason, trades, balances, shortfalls, breaker,
   head hash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from tqdm.contrib.logging import logging_redirect_tqdm

from agents.namespace import Namespace, prepare_namespace
from agents.operator_clock import DECIDE_TIMEOUT_S, Clock
from agents.runner import Outbox
from agents.simulation_config import SimulationConfig, SimulationError
from agents.summary import Summary, collect
from agents.wiring import Cast, adversary_spec, cast_agents, strategy_plan
from connectors.progress import progress_bar
from core.config import Settings
from core.identities import operator_signer
from core.keyring import Keyring
from core.process import Service
from schemas.keys import derive_key
from schemas.signing import HmacSigner, key_fingerprint

logger = logging.getLogger(__name__)

SERVICE_STOP_TIMEOUT_S = 15.0
AGENT_JOIN_TIMEOUT_S = 5.0


def start_services(ns: Namespace, config: SimulationConfig, secret: bytes, founder: str) -> list[Service]:
    """The validator (first) and the extra services, all pointed at the run's namespace; the validator
    trusts ``founder`` (the scenario operator's public key) to sign the run's genesis."""
    # The other services never hold the root secret (an empty variable hides an inherited one).
    env = {**os.environ, **ns.settings.replace(key_secret=None).as_env()}
    # Exit on its own if we die without stopping it: longer than any wait of ours between messages.
    idle_exit_s = str(int(max(config.tick_timeout_s, DECIDE_TIMEOUT_S) * 4))
    validator = (sys.executable, "-m", "gridgov.cli", "validator", "--metrics-port", "0", "--idle-exit-s", idle_exit_s)
    logs = ns.settings.home / "runs" / ns.run_id
    # Only the validator verifies signatures, so only it is given the secret the agents' keys derive from.
    validator_settings = ns.settings.replace(key_secret=secret.hex(), founding_operators=founder)
    validator_env = {**os.environ, **validator_settings.as_env()}
    services = [Service("validator", validator, validator_env, logs / "validator.log")]
    return services + [Service(name, argv, env, logs / f"{name}.log") for name, argv in config.extra_services]


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
        operator = operator_signer(settings.home, config.scenario.operator)
        services = start_services(ns, config, secret, operator.public_key)
        for service in services:
            cleanup.callback(service.stop, SERVICE_STOP_TIMEOUT_S)
        signers = {a: HmacSigner(derive_key(secret, a)) for a in [config.scenario.meter, *(s.agent for s in specs)]}
        clock = Clock(config, ns, operator, signers.pop(config.scenario.meter), outbox, services[0])
        cleanup.callback(clock.close)
        cleanup.callback(cast.close)
        cleanup.callback(_halt, cast, stop)
        fingerprints = {a: key_fingerprint(s.key) for a, s in signers.items()}
        clock.genesis(specs, {**fingerprints, config.scenario.meter: key_fingerprint(clock.meter_signer.key)})
        cast_agents(cast, config, ns, signers, outbox, plan, specs, stop)
        for loop in cast.loops:
            loop.start()
        _run_ticks(config, clock)
        clock.drain()
    return collect(ns, config, clock, cast, time.monotonic() - started, Keyring(secret, [operator.public_key]))


def _halt(cast: Cast, stop: threading.Event) -> None:
    stop.set()
    for loop in cast.loops:
        loop.join(AGENT_JOIN_TIMEOUT_S)


def _run_ticks(config: SimulationConfig, clock: Clock) -> None:
    ticks = range(1, config.ticks + 1)
    with (
        logging_redirect_tqdm(),
        progress_bar(ticks, enabled=config.progress, desc=clock.ns.run_id, unit="tick") as bar,
    ):
        for tick in bar:
            clock.tick(tick)
            bar.set_postfix(breaker="OPEN" if clock.breaker_open_since is not None else "closed", refresh=False)
