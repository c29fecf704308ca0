"""``gridgov up | down | status``: the whole grid as long-running services (see ``gridgov.live``).

``up`` runs on the validator's host, which holds the root secret: it prepares the database and the
topics, writes each participant's and the meter's key file (``GRID_HOME/keys``, the files
``participants add`` writes), the registry of key fingerprints the meter founds an empty ledger with,
and supervisord's conf; then starts supervisord, or, when it runs already, applies the new conf (a
participant added since, ``--add-agent``, a new tick length). Each service gets only what it needs:
the validator the root secret, every agent its own key file, the meter its own and the operator's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import psycopg

from agents import scenario as scenarios
from agents.simulation_config import MARKETS, SEED_DEFAULT, SimulationError, for_market
from connectors.kafka_admin import ensure_topics
from connectors.migrate import apply_migrations
from connectors.readmodel.ledger import key_generation, participants
from core import agent_keys, config
from core.config import Settings
from core.identities import operator_signer
from core.key_secret import key_secret
from core.process import exclusive
from core.tables import format_table
from gridgov import infra, live
from gridgov.live import LiveError, LivePaths, Plan

UP_LOCK_TIMEOUT_S = 300.0  # longer than one `up`: infrastructure, migrations, every service's start


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = subparsers.add_parser("up", help="run the live grid: validator, meter, one process per participant, sinks")
    add_up_arguments(up)
    up.set_defaults(func=handle_up)
    down = subparsers.add_parser("down", help="stop the live grid `gridgov up` started, and nothing else")
    down.set_defaults(func=handle_down)
    keys = subparsers.add_parser(
        "live-keys",
        help="for containers: the meter's key and registry into OUT/meter, each founder's key into OUT/agents",
    )
    keys.add_argument("--out", type=Path, required=True, help="a directory only the key issuer writes")
    keys.add_argument("--scenario", help="whose participants found the ledger (default: GRID_LIVE_SCENARIO)")
    keys.set_defaults(func=handle_live_keys)
    status = subparsers.add_parser("status", help="the live grid's services: state, restarts, lag, decisions, memory")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=handle_status)


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``up`` (and ``soak``); each unset one keeps the running plan's value, or the default."""
    parser.add_argument("--scenario", help="bundled name or TOML file (default: GRID_LIVE_SCENARIO)")
    parser.add_argument("--market", choices=MARKETS, help="default: GRID_LIVE_MARKET")
    parser.add_argument("--seed", type=int, help=f"metering noise and strategies (default {SEED_DEFAULT})")
    parser.add_argument("--tick-s", type=float, help="wall-clock seconds per grid tick (default: GRID_TICK_S)")
    parser.add_argument(
        "--add-agent",
        action="append",
        default=[],
        metavar="AGENT",
        help="also run this participant (registered with `gridgov participants add`); repeatable",
    )
    parser.add_argument("--dashboard-port", type=int, help="default: STREAMLIT_SERVER_PORT")
    parser.add_argument("--no-dashboard", action="store_true", help="run without the dashboard")
    parser.add_argument("--no-sinks", action="store_true", help="run without the sinks")
    parser.add_argument("--validator-metrics-port", type=int, help="the validator's Prometheus port (default 0: off)")


def plan_from(args: argparse.Namespace, settings: Settings, previous: Plan | None) -> Plan:
    def pick(given: Any, kept: Any, default: Any) -> Any:
        return given if given is not None else (kept if previous is not None else default)

    dashboard = (
        None
        if args.no_dashboard
        else pick(args.dashboard_port, previous and previous.dashboard_port, settings.dashboard_port)
    )
    return Plan(
        scenario=pick(args.scenario, previous and previous.scenario, settings.live_scenario),
        market=pick(args.market, previous and previous.market, settings.live_market),
        seed=pick(args.seed, previous and previous.seed, SEED_DEFAULT),
        tick_s=pick(args.tick_s, previous and previous.tick_s, settings.tick_s),
        agents=dict(previous.agents) if previous else {},
        sinks=False if args.no_sinks else (previous.sinks if previous else True),
        dashboard_port=dashboard,
        validator_metrics_port=pick(args.validator_metrics_port, previous and previous.validator_metrics_port, 0),
    )


def key_file(
    home: Path, secret: bytes, agent: str, generation: int, directory: Path | None = None
) -> tuple[Path, agent_keys.AgentKey]:
    """``agent``'s key file of ``generation`` (in ``directory``, default GRID_HOME/keys), written when
    missing; an existing one must hold that key."""
    key = agent_keys.issue(secret, agent, generation)
    path = agent_keys.default_path(home, agent, generation)
    path = path if directory is None else directory / path.name
    if not path.exists():
        agent_keys.write(path, key)
    elif agent_keys.load(path).fingerprint != key.fingerprint:
        raise LiveError(f"{path} holds another key than the root secret's for {agent}: move it away")
    return path, key


def write_registry(path: Path, registry: dict[str, str]) -> None:
    """The founders' key fingerprints (public: the genesis entry shows them) the meter founds with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(registry, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def bring_up(settings: Settings, args: argparse.Namespace) -> Plan:
    """Prepare and start (or update) the live grid; return the plan it runs. One at a time per
    GRID_HOME: two at once would both find no supervisord and start one each."""
    paths = LivePaths(settings.home)
    with exclusive(paths.dir / "up.lock", UP_LOCK_TIMEOUT_S):
        return _bring_up(settings, args, paths)


def _bring_up(settings: Settings, args: argparse.Namespace, paths: LivePaths) -> Plan:
    plan = plan_from(args, settings, Plan.load(paths.plan))
    try:
        scenario = for_market(scenarios.load(scenarios.resolve(plan.scenario)), plan.market)
    except (scenarios.ScenarioError, SimulationError) as exc:
        raise LiveError(str(exc)) from exc
    infra.up(settings=settings)
    apply_migrations(settings.database_url)
    ensure_topics(settings)
    secret = key_secret(settings)
    # The founder's key: the validator trusts the operators in GRID_HOME/operators to sign a genesis.
    operator_signer(settings.home, scenario.operator)
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        registered = participants(conn)
        generations = {row["agent"]: key_generation(conn, row["agent"]) for row in registered}
    founders = [p.agent for p in scenario.participants]
    meter_path, meter_key = key_file(settings.home, secret, scenario.meter, generations.get(scenario.meter, 0))
    registry = {scenario.meter: meter_key.fingerprint}
    registry |= {a: key_file(settings.home, secret, a, 0)[1].fingerprint for a in founders}
    write_registry(paths.registry, registry)
    # Empty ledger: the founders. Founded: every participant it registered and has not suspended
    # (one added at runtime included), plus those asked for by name.
    wanted = (
        founders
        if not registered
        else [r["agent"] for r in registered if r["role"] == "participant" and not r["suspended"]]
    )
    for agent in [*wanted, *args.add_agent]:
        path, _ = key_file(settings.home, secret, agent, generations.get(agent, 0))
        plan.agents[agent] = str(path)
    plan.save(paths.plan)
    # Only the validator verifies signatures: the root secret goes to it alone (or stays in its file).
    validator_env = {"GRID_KEY_SECRET": secret.hex()} if settings.key_secret is not None else {}
    found = live.programs(plan, paths, meter_path, validator_env)
    live.write_private_text(paths.conf, live.render_conf(paths, found))
    if live.running(paths):
        changes = live.apply_conf(paths)
        print(f"live grid updated: {', '.join(f'{k} {v}' for k, v in changes.items() if v) or 'no change'}")
    else:
        env = {**os.environ, **settings.replace(key_secret=None).as_env()}
        live.start_supervisord(paths, env)
        print(f"live grid started: supervisord on {paths.socket}, logs in {paths.logs}")
    live.wait_programs_running(paths, [p.name for p in found])
    return plan


def print_status(settings: Settings, as_json: bool = False) -> int:
    paths = LivePaths(settings.home)
    plan = Plan.load(paths.plan)
    if plan is None or not live.running(paths):
        print("live grid: not running (start it with `gridgov up`)")
        return 1
    found = live.gather(settings, paths, plan)
    if as_json:
        print(json.dumps([asdict(s) for s in found], indent=2))
    else:
        print(f"live grid: scenario {plan.scenario}, market {plan.market}, one tick every {plan.tick_s:g} s")
        print(format_table(live.STATUS_HEADERS, live.status_rows(found)))
    return 0 if all(s.state == live.RUNNING for s in found) else 1


def handle_up(args: argparse.Namespace) -> int:
    settings = config.load()
    try:
        bring_up(settings, args)
    except (LiveError, infra.InfraError, agent_keys.KeyFileError) as exc:
        print(f"up: {exc}", file=sys.stderr)
        return 1
    return print_status(settings)


def handle_down(args: argparse.Namespace) -> int:
    stopped = live.shutdown(LivePaths(config.load().home))
    print(f"live grid stopped: {', '.join(stopped)}" if stopped else "live grid: not running")
    return 0


def handle_status(args: argparse.Namespace) -> int:
    return print_status(config.load(), args.json)


def handle_live_keys(args: argparse.Namespace) -> int:
    """What `up` writes for its own services, laid out for compose: each container mounts one subdirectory."""
    settings = config.load()
    try:
        scenario = scenarios.load(scenarios.resolve(args.scenario or settings.live_scenario))
        secret = key_secret(settings)
        meter_path, meter_key = key_file(settings.home, secret, scenario.meter, 0, args.out / "meter")
        founders = {
            p.agent: key_file(settings.home, secret, p.agent, 0, args.out / "agents") for p in scenario.participants
        }
    except (scenarios.ScenarioError, LiveError, agent_keys.KeyFileError) as exc:
        print(f"live-keys: {exc}", file=sys.stderr)
        return 1
    registry = {scenario.meter: meter_key.fingerprint} | {a: key.fingerprint for a, (_, key) in founders.items()}
    write_registry(args.out / "meter" / "registry.json", registry)
    print(f"live-keys: {meter_path} and {len(founders)} participants' key files in {args.out / 'agents'}")
    return 0
