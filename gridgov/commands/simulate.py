"""``gridgov simulate``: bring up the grid and run a scenario end to end, then print its summary."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from agents import scenario as scenarios
from agents.simulate import run
from agents.simulation_config import (
    AUTO_RESUME_TICKS_DEFAULT,
    MARKET_DEFAULT,
    MARKETS,
    RUN_ID,
    RUN_ID_RULE,
    SEED_DEFAULT,
    TICK_TIMEOUT_S_DEFAULT,
    TICKS_DEFAULT,
    SimulationConfig,
    SimulationError,
    for_market,
)
from agents.summary import Summary
from connectors.gemini import GeminiConfig
from core import config
from core.key_secret import key_secret
from gridgov import infra


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a scenario: infrastructure, validator, metering, agents; then a summary with the ledger head hash",
    )
    parser.add_argument("--scenario", default="default", help="a bundled scenario (default, heatwave) or a TOML file")
    parser.add_argument("--ticks", type=_positive, default=TICKS_DEFAULT, help="ticks to run (24 ticks = a day)")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT, help="metering noise and agents' randomness")
    parser.add_argument("--run-id", type=_run_id, help="namespace of the run (default: <scenario>-<seed>)")
    parser.add_argument("--adversarial", action="store_true", help="add an agent that attacks the validator")
    parser.add_argument(
        "--free-running",
        action="store_true",
        help="agents publish as soon as they decide (realistic order; the head hash then differs run to run)",
    )
    parser.add_argument(
        "--auto-resume-ticks",
        type=_non_negative,
        default=AUTO_RESUME_TICKS_DEFAULT,
        help="a simulated operator resumes a tripped breaker after this many ticks (0 = never)",
    )
    parser.add_argument(
        "--market",
        choices=MARKETS,
        default=MARKET_DEFAULT,
        help="offers: take-it-or-leave-it offers and accepts; book: bids and asks on the continuous order book; "
        "clearing: the same orders cleared once per tick at one price",
    )
    parser.add_argument("--heuristic", action="store_true", help="heuristic agents even when GEMINI_API_KEY is set")
    parser.add_argument(
        "--tick-timeout-s", type=float, default=TICK_TIMEOUT_S_DEFAULT, help="how long a tick waits for each agent"
    )
    parser.add_argument(
        "--dashboard", action="store_true", help="afterwards, serve the dashboard on this run in the background"
    )
    parser.add_argument(
        "--no-sinks", action="store_true", help="skip delivering the run's rejections and alerts to Linear/Discord"
    )
    parser.set_defaults(func=handle)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _run_id(text: str) -> str:
    if not RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(RUN_ID_RULE)
    return text


def _gemini(args: argparse.Namespace, settings: config.Settings) -> GeminiConfig | None:
    use = settings.gemini_key is not None and not args.heuristic
    return GeminiConfig.from_settings(settings) if use else None


def handle(args: argparse.Namespace) -> int:
    settings = config.load()
    try:
        scenario = scenarios.load(scenarios.resolve(args.scenario))
    except scenarios.ScenarioError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    try:
        infra.up(settings=settings)
    except infra.InfraError as exc:
        print(f"simulate: infrastructure failed: {exc}", file=sys.stderr)
        return 1
    run_config = SimulationConfig(
        scenario=for_market(scenario, args.market),
        market=args.market,
        ticks=args.ticks,
        seed=args.seed,
        run_id=args.run_id,
        adversarial=args.adversarial,
        free_running=args.free_running,
        auto_resume_ticks=args.auto_resume_ticks,
        gemini=_gemini(args, settings),
        tick_timeout_s=args.tick_timeout_s,
    )
    try:
        summary = run(run_config, settings, key_secret(settings))
    except (SimulationError, scenarios.ScenarioError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("simulate: interrupted; the validator and agents were stopped", file=sys.stderr)
        return 130
    print(summary.render())
    env = run_environment(settings, summary)
    sinks_rc = 0 if args.no_sinks else drain_sinks(env)
    dashboard_rc = start_dashboard(summary.run_id, env) if args.dashboard else 0
    return 1 if summary.verify_problems or sinks_rc or dashboard_rc else 0


def run_environment(settings: config.Settings, summary: Summary) -> dict[str, str]:
    """The environment of a command that works on the run's database and topics: the sinks and the
    dashboard, which never hold the root secret."""
    run_settings = settings.replace(
        database_url_external=summary.database_url, topic_prefix=summary.topic_prefix, key_secret=None
    )
    return {**os.environ, **run_settings.as_env()}


def start_dashboard(run_id: str, env: dict[str, str]) -> int:
    print(f"\nDashboard on run {run_id}:")
    sys.stdout.flush()
    command = [sys.executable, "-m", "gridgov.cli", "--log-level", "WARNING", "dashboard", "start"]
    return subprocess.run(command, env=env, timeout=SINKS_DRAIN_TIMEOUT_S, check=False).returncode


SINKS_DRAIN_TIMEOUT_S = 300


def drain_sinks(env: dict[str, str]) -> int:
    """Deliver the run's rejections and alerts (or write them to the outbox without credentials)."""
    gridgov = [sys.executable, "-m", "gridgov.cli", "--log-level", "WARNING", "sinks"]
    print("\nSinks: rejections -> Linear tickets, critical events -> Discord")
    sys.stdout.flush()
    drained = subprocess.run([*gridgov, "run", "--once"], env=env, timeout=SINKS_DRAIN_TIMEOUT_S, check=False)
    status = subprocess.run([*gridgov, "status"], env=env, timeout=SINKS_DRAIN_TIMEOUT_S, check=False)
    return drained.returncode or status.returncode
