"""``gridgov soak --duration-s N``: run the live grid for a while, watching it, then report and audit.

It starts the live grid (or watches the one running), samples every service's state every
``--sample-s``, and at the end prints per service its peak and final memory, restarts, decisions and
consumer lag; then stops the grid if it started it, and audits the ledger as ``gridgov verify`` does.
Exit 1 when a service was down at the end or the audit found a problem.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from connectors.readmodel.ledger import audit_database
from core import config
from core.key_secret import key_secret
from core.keyring import validator_keyring
from core.tables import format_table
from gridgov import infra, live
from gridgov.commands.up import add_up_arguments, bring_up
from gridgov.live import LiveError, LivePaths, ServiceStatus

SAMPLE_S_DEFAULT = 10.0
# Memory is compared from the first sample past this share of the run: start-up (imports, the fold,
# caches filling) is not growth.
WARM_UP_SHARE = 0.25
SOAK_HEADERS = (
    "SERVICE", "STATE", "PEAK RSS MB", "WARM RSS MB", "FINAL RSS MB", "GROWTH", "RESTARTS", "DECISIONS IN SOAK",
    "DECISIONS", "LAG AT END",
)  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("soak", help="run the live grid for a while; report memory, restarts, lag, verify")
    parser.add_argument("--duration-s", type=float, required=True, help="how long to run and watch")
    parser.add_argument("--sample-s", type=float, default=SAMPLE_S_DEFAULT, help="how often to sample")
    parser.add_argument("--keep", action="store_true", help="leave the grid running afterwards")
    add_up_arguments(parser)
    parser.set_defaults(func=handle)


def _mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.0f}"


def growth_pct(warm_kb: int | None, final_kb: int | None) -> float | None:
    """How much a service's memory grew from warm-up to the end, in percent of the warm figure."""
    return None if not warm_kb or final_kb is None else 100 * (final_kb - warm_kb) / warm_kb


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f} %"


def report(peaks_kb: dict[str, int], warm_kb: dict[str, int], first: dict[str, int], final: list[ServiceStatus]) -> str:
    """The final sample, with each service's peak memory, its memory after warm-up and its growth
    since, and the decisions since the first sample (the ``DECISIONS`` column counts the whole
    ledger's)."""
    rows = [
        [
            s.name,
            "up" if s.state == live.RUNNING else f"down ({s.state.lower()})",
            _mb(peaks_kb.get(s.name)),
            _mb(warm_kb.get(s.name)),
            _mb(s.rss_kb),
            _pct(growth_pct(warm_kb.get(s.name), s.rss_kb)),
            s.restarts,
            "-" if s.decisions is None else s.decisions - first.get(s.name, 0),
            "-" if s.decisions is None else s.decisions,
            "-" if s.lag is None else s.lag,
        ]
        for s in final
    ]
    return format_table(SOAK_HEADERS, rows)


def handle(args: argparse.Namespace) -> int:
    """1. Start the grid unless it runs. 2. Sample until the duration is over (a bounded count of
    samples). 3. Report the final sample with each service's peak memory. 4. Stop what it started.
    5. Audit the ledger with the validator's keys."""
    settings = config.load()
    paths = LivePaths(settings.home)
    started = not live.running(paths)
    try:
        plan = bring_up(settings, args)
    except (LiveError, infra.InfraError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    print(f"soak: {args.duration_s:g} s on the live grid ({len(plan.agents)} participants, tick {plan.tick_s:g} s)")
    sys.stdout.flush()
    peaks_kb: dict[str, int] = {}
    deadline_s = time.monotonic() + args.duration_s
    final: list[ServiceStatus] = []
    first: dict[str, int] = {}
    warm_kb: dict[str, int] = {}
    warm_after_s = time.monotonic() + WARM_UP_SHARE * args.duration_s
    for _ in range(math.ceil(args.duration_s / args.sample_s) + 1):
        final = live.gather(settings, paths, plan)
        first = first or {s.name: s.decisions or 0 for s in final}
        for service in final:
            peaks_kb[service.name] = max(peaks_kb.get(service.name, 0), service.rss_kb or 0)
            if time.monotonic() >= warm_after_s and service.rss_kb:
                warm_kb.setdefault(service.name, service.rss_kb)
        remaining_s = deadline_s - time.monotonic()
        if remaining_s <= 0:
            break
        time.sleep(min(args.sample_s, remaining_s))
    print(report(peaks_kb, warm_kb, first, final))
    if started and not args.keep:
        live.shutdown(paths)
        print("soak: live grid stopped")
    audit = audit_database(settings.database_url, validator_keyring(settings, key_secret(settings)))
    print(f"verify: {audit.entries} entries, head seq {audit.head_seq}: " + ("ok" if audit.ok else "PROBLEMS"))
    for problem in audit.problems:
        print(f"MISMATCH {problem.where}: {problem.reason} — {problem.detail}")
    all_up = bool(final) and all(s.state == live.RUNNING for s in final)
    return 0 if audit.ok and all_up else 1
