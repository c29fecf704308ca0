"""A simulation's summary: what the run did (from the clock and the cast) beside what the ledger
holds (from the read model), and its rendering as the command's report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.namespace import Namespace
from agents.operator_clock import Clock
from agents.runner import Sent
from agents.simulation_config import SimulationConfig
from agents.wiring import Cast
from connectors.readmodel.ledger import audit_database
from connectors.readmodel.market import MarketFigures, market_figures
from connectors.readmodel.summary import BreakerEvent, read_figures
from core.pg_access import redacted
from core.tables import format_table
from law.decide import Keys


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
    market: MarketFigures
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


def collect(ns: Namespace, config: SimulationConfig, clock: Clock, cast: Cast, elapsed_s: float, keys: Keys) -> Summary:
    """The run's figures from its database, after ``verify`` with re-authentication and re-decision."""
    url = ns.settings.database_url
    report = audit_database(url, keys)
    attacked = _attacked(clock.all_sent)
    figures = read_figures(url, list(attacked))
    market = market_figures(url)
    return Summary(
        run_id=ns.run_id,
        scenario=config.scenario.name,
        seed=config.seed,
        ticks=config.ticks,
        mode="free-running" if config.free_running else "lockstep",
        database_url=url,
        topic_prefix=ns.settings.topic_prefix,
        elapsed_s=elapsed_s,
        head_seq=figures.head_seq,
        head_hash=figures.head_hash,
        verify_problems=[f"{p.where}: {p.reason}: {p.detail}" for p in report.problems],
        accepted_by_kind=figures.accepted_by_kind,
        rejected_by_reason=figures.rejected_by_reason,
        trades=figures.trades,
        offers=_offers(market, figures.still_open_offers),
        market=market,
        balances=figures.balances,
        shortfall_total=figures.shortfall_total,
        critical=figures.critical,
        breaker=figures.breaker,
        simulated_resume_ticks=clock.resumes,
        attacks=_attacks(attacked, figures.rejection_reasons),
        strategy_sources=dict(sum((s.sources for s in cast.strategies.values()), Counter())),
        missed_turns=clock.missed,
        agent_errors=[e for loop in cast.loops for e in loop.errors],
        not_reproducible_because=_reproducibility(config, clock, cast),
    )


def _offers(market: MarketFigures, still_open: int) -> dict[str, int]:
    opened, accepted, cancelled = (market.offers.get(k, 0) for k in ("opened", "accepted", "cancelled"))
    expired = opened - accepted - cancelled - still_open  # lapsed, or closed with a suspended seller
    return {"opened": opened, "accepted": accepted, "cancelled": cancelled, "expired": expired, "open": still_open}


def _attacked(sent: list[Sent]) -> dict[int, tuple[str | None, str | None]]:
    """offset -> (attack, expected reason) of every attack produced in the run."""
    return {s.offset: (s.message.attack, s.message.expected_reason) for s in sent if s.message.attack}


def _attacks(
    attacked: dict[int, tuple[str | None, str | None]], rejected: dict[int, str]
) -> list[tuple[str, str, str, int]]:
    outcomes: Counter[tuple[str, str, str]] = Counter()
    for offset, (attack, expected) in attacked.items():
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


def _section(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return f"\n{title}\n" + (format_table(headers, rows) if rows else "  (none)")


def render(s: Summary) -> str:
    resources = ("energy", "water", "credits")
    decided = sum(s.accepted_by_kind.values()) + sum(s.rejected_by_reason.values())
    parts = [
        f"Simulation {s.run_id}: scenario {s.scenario}, seed {s.seed}, {s.ticks} ticks, {s.mode}, "
        f"{decided} proposals decided in {s.elapsed_s:.1f} s",
        f"  database {redacted(s.database_url)}   topics {s.topic_prefix}.*",
        _section("Accepted by kind", ("KIND", "COUNT"), sorted(s.accepted_by_kind.items())),
        _section("Rejected by reason", ("REASON", "COUNT"), list(s.rejected_by_reason.items())),
        _section(
            "Trades by resource (accepted offers)",
            ("RESOURCE", "TRADES", "UNITS", "CREDITS PAID (mc)"),
            [(r, *t) for r, t in s.trades.items()],
        ),
        "  offers: " + ", ".join(f"{k} {v}" for k, v in s.offers.items()),
        _section("Market (offers and the order book; prices in mc per 1000 units)", *_market_table(s.market)),
        f"  trades {s.market.trades}, surplus "
        + ("n/a (offers state no buyer's limit)" if s.market.surplus_mc is None else f"{s.market.surplus_mc:,} mc")
        + "; orders: "
        + ", ".join(f"{k} {v}" for k, v in s.market.orders.items()),
        "  self-sufficiency (demand served from the grid's own production): "
        + ", ".join(f"{r} {_pct(f.self_sufficiency_pct)}" for r, f in sorted(s.market.resources.items()) if f.demand)
        + f"; carbon: emitting producers made {s.market.emitted_energy_wh:,} Wh, "
        f"paid {s.market.carbon_tax_mc:,} mc of carbon tax",
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


def _market_table(m: MarketFigures) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    rows = [
        (
            resource,
            f.volume,
            "-" if f.price_per_1000 is None else f.price_per_1000,
            "-" if f.volatility_pct is None else f"{f.volatility_pct:.0f} %",
        )
        for resource, f in sorted(m.resources.items())
    ]
    return ("RESOURCE", "UNITS TRADED", "AVERAGE PRICE", "VOLATILITY"), rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _verdicts(s: Summary) -> str:
    checked = "ok (hash chain, signatures and the law re-run on every entry, conservation, world_state, offsets)"
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
