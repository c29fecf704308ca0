"""``rehydrate``: rebuild the derived state by folding the ledger, from T=0 or from a checkpoint.

While folding it checks every entry (hash chain, seq continuity, offset order, per-entry
conservation) and every checkpoint it starts from or passes. An entry that fails is not applied: it
becomes an anomaly, recorded in ``replay_anomalies`` and raised as a critical alert and incident.
Then the rebuilt state is compared with the caches the validator keeps (world_state, open_offers,
participants, grid_status) and every difference is reported.

Speed: entries and their postings arrive in one binary ``COPY TO STDOUT`` (no cursor round trips;
the server joins and encodes on its own core), and each entry is decoded once for both its hash
check and its fold. On a 2-core machine that is ~150k entries/s, CPU-bound in this process: about
60 % hashing and folding (law.ledger.canonical, sha256, apply), 40 % row decoding in psycopg.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg import sql
from tqdm import tqdm

from connectors.checkpoints import checkpoint_problem, checkpoints_newest_first, read_checkpoint
from connectors.kafka_io import proposal_producer, send_all
from core.config import Settings
from core.rows import LEDGER_COLUMNS, LEDGER_TYPES, Postings, entry_from_row
from core.version import validator_version
from law import Accepted, State, apply
from law.ledger import GENESIS_PREV_HASH, all_resources_balance, canonical
from law.snapshot import from_json, to_json
from law.state import inconsistency
from schemas.records import AlertRecord, IncidentRecord
from streams.verify import entry_problems

logger = logging.getLogger(__name__)

_LEDGER_COLUMNS_OF_L = ", ".join(f"l.{c.strip()}" for c in LEDGER_COLUMNS.split(","))
PROGRESS_EVERY_COUNT = 10_000
ANOMALIES_RECORDED_MAX = 1_000
DIFFERENCES_REPORTED_MAX = 1_000
ALERTS_SENT_MAX = 20
DETAIL_CHARS_MAX = 3_900  # AlertRecord.detail allows 4,000

Row = tuple[Any, ...]  # LEDGER_COLUMNS, then the postings as JSON
FromCheckpoint = Literal["latest"] | int | None


@dataclass(frozen=True, slots=True)
class Anomaly:
    seq: int | None  # None: a difference that belongs to no single entry
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Difference:
    where: str  # "world_state energy@agent001:main", "open_offers p-12", "grid_status tick"
    cached: str
    rebuilt: str


@dataclass
class Start:
    state: State
    prev_hash: bytes = GENESIS_PREV_HASH
    last_offset: int = -1
    checkpoint_seq: int | None = None  # None: from T=0


@dataclass
class Rehydration:
    run_id: str
    start: Start
    head_seq: int = -1
    head_hash: bytes = GENESIS_PREV_HASH
    entries: int = 0
    seconds: float = 0.0
    anomalies: list[Anomaly] = field(default_factory=list)  # the first 1,000
    anomaly_count: int = 0
    differences: list[Difference] = field(default_factory=list)  # the first 1,000
    difference_count: int = 0

    @property
    def state(self) -> State:
        return self.start.state

    @property
    def ok(self) -> bool:
        return not self.anomaly_count and not self.difference_count

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    def add(self, seq: int | None, reason: str, detail: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < ANOMALIES_RECORDED_MAX:
            logger.error("anomaly", extra={"run_id": self.run_id, "seq": seq, "reason": reason, "detail": detail})
            self.anomalies.append(Anomaly(seq, reason, detail))


# --- reading the ledger fast ---------------------------------------------------------------------


def stream_entries(database_url: str, from_seq: int, to_seq: int) -> Iterator[tuple[Row, Postings]]:
    """(ledger row, postings) for seq in [from_seq, to_seq], in seq order, over one binary COPY.

    The server groups each entry's postings into one JSON array (a merge join on the primary keys,
    on the server's own core), which costs the client one ``orjson.loads`` instead of a row per posting.
    """
    query = sql.SQL(
        "COPY (SELECT {}, p.legs FROM ledger l LEFT JOIN ("
        "SELECT seq, json_agg(json_build_array(account, resource, amount) ORDER BY idx)::text AS legs "
        "FROM postings WHERE seq BETWEEN {} AND {} GROUP BY seq) p ON p.seq = l.seq "
        "WHERE l.seq BETWEEN {} AND {} ORDER BY l.seq) TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(_LEDGER_COLUMNS_OF_L), *[sql.Literal(s) for s in (from_seq, to_seq, from_seq, to_seq)])
    with psycopg.connect(database_url) as conn, conn.cursor().copy(query) as copy:
        copy.set_types([*LEDGER_TYPES, "text"])
        for row in copy.rows():
            legs = row[13]
            yield row, tuple(map(tuple, orjson.loads(legs))) if legs else ()


# --- the start: T=0 or a checkpoint --------------------------------------------------------------


def choose_start(conn: psycopg.Connection[Any], report: Rehydration, wanted: FromCheckpoint, head_seq: int) -> Start:
    """The newest checkpoint at or below ``wanted`` that verifies; corrupt ones are anomalies, skipped."""
    if wanted is None:
        return Start(State())
    limit = head_seq if wanted == "latest" else min(int(wanted), head_seq)
    for checkpoint in checkpoints_newest_first(conn, limit):
        row = conn.execute("SELECT hash, source_offset FROM ledger WHERE seq = %s", (checkpoint.seq,)).fetchone()
        problem = checkpoint_problem(checkpoint, bytes(row[0]) if row else None)
        if problem is None and row is not None:
            logger.info("starting from checkpoint", extra={"seq": checkpoint.seq})
            return Start(from_json(checkpoint.state_json), checkpoint.ledger_hash, row[1], checkpoint.seq)
        if problem is not None:
            report.add(checkpoint.seq, problem[0], f"checkpoint {checkpoint.seq}: {problem[1]}; skipped")
    conn.commit()
    logger.warning("no valid checkpoint at or below %s; folding from T=0", limit)
    return Start(State())


# --- the fold ------------------------------------------------------------------------------------


def fold(database_url: str, conn: psycopg.Connection[Any], report: Rehydration, to_seq: int, bar: tqdm[Any]) -> None:
    """Fold entries after the start up to ``to_seq`` into ``report.state``, checking each one."""
    start, state = report.start, report.state
    expected, prev_hash, last_offset = state.seq_next, start.prev_hash, start.last_offset
    ahead = _checkpoints_after(conn, expected, to_seq)
    next_checkpoint = ahead.pop() if ahead else -1
    started = time.perf_counter()
    for row, legs in stream_entries(database_url, expected, to_seq):
        seq, source_offset, entry_hash = row[0], row[1], row[12]
        accepted = _verified(row, legs, expected, prev_hash, last_offset)
        conflict = inconsistency(state, accepted) if accepted is not None else None
        if accepted is not None and conflict is None:
            apply(state, accepted)
        elif conflict is not None:
            report.add(seq, "FOLD_INCONSISTENT", f"cannot follow the entries before it: {conflict}; not applied")
        else:
            _report_entry(report, row, legs, expected, prev_hash, last_offset)
        # Continue from what is stored, so one bad row is one anomaly, not a cascade.
        expected, prev_hash, last_offset = seq + 1, entry_hash, source_offset
        report.entries += 1
        report.head_seq, report.head_hash = seq, entry_hash
        if seq == next_checkpoint:
            _check_passed_checkpoint(conn, report, seq, entry_hash)
            next_checkpoint = ahead.pop() if ahead else -1
        if report.entries % PROGRESS_EVERY_COUNT == 0:
            bar.update(PROGRESS_EVERY_COUNT)
    bar.update(report.entries % PROGRESS_EVERY_COUNT)
    report.seconds = time.perf_counter() - started


def _verified(row: Row, legs: Postings, expected: int, prev_hash: bytes, last_offset: int) -> Accepted | None:
    """The entry's decision if every check passes, else None. The fast path: one decode per entry."""
    seq, source_offset, proposal_id, kind, agent, tick, expires_tick, version, policy_version = row[:9]
    effects, proposal_json, prev, entry_hash = row[9:13]
    if seq != expected or prev != prev_hash or source_offset <= last_offset or not all_resources_balance(legs):
        return None
    try:
        decoded_effects = tuple(orjson.loads(effects))
    except orjson.JSONDecodeError:
        return None
    accepted = Accepted(proposal_id, agent, kind, tick, expires_tick, legs, decoded_effects, policy_version)
    body = canonical(seq, source_offset, accepted, version, effects, proposal_json)
    return accepted if hashlib.sha256(prev + body).digest() == entry_hash else None


def _report_entry(report: Rehydration, row: Row, legs: Postings, expected: int, prev: bytes, last: int) -> None:
    try:
        found = entry_problems(entry_from_row(row, legs), expected, prev, last)
    except (orjson.JSONDecodeError, TypeError):
        found = [("HASH_MISMATCH", "effects_json is not JSON: the row was edited")]
    for reason, detail in found:
        report.add(row[0], reason, f"{detail}; entry {row[2]!r} at offset {row[1]} not applied")


def _checkpoints_after(conn: psycopg.Connection[Any], first_seq: int, to_seq: int) -> list[int]:
    """Seqs of the checkpoints the fold will pass, last first (popped from the end)."""
    rows = conn.execute(
        "SELECT seq FROM checkpoints WHERE seq BETWEEN %s AND %s ORDER BY seq DESC", (first_seq, to_seq)
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def _check_passed_checkpoint(conn: psycopg.Connection[Any], report: Rehydration, seq: int, entry_hash: bytes) -> None:
    checkpoint = read_checkpoint(conn, seq)
    conn.commit()
    if checkpoint is None or any(a.seq == seq and a.reason.startswith("CHECKPOINT") for a in report.anomalies):
        return  # gone, or already reported when the start skipped it
    problem = checkpoint_problem(checkpoint, entry_hash)
    if problem is not None:
        report.add(seq, problem[0], f"checkpoint {seq}: {problem[1]}")
    elif any(a.seq is not None and a.seq <= seq for a in report.anomalies):
        logger.info("checkpoint %d not compared: an earlier entry was not applied", seq)
    elif checkpoint.state_json != to_json(report.state):
        report.add(seq, "CHECKPOINT_MISMATCH", f"checkpoint {seq} differs from the fold of the ledger up to it")


# --- the caches ----------------------------------------------------------------------------------


@dataclass
class Caches:
    """What the validator cached, read in one snapshot together with the ledger head it belongs to."""

    head_seq: int
    head_hash: bytes
    balances: dict[tuple[str, str], int]
    offers: dict[str, tuple[Any, ...]]
    participants: dict[str, tuple[Any, ...]]
    status: dict[str, Any] | None


def read_caches(conn: psycopg.Connection[Any]) -> Caches:
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        balances = {(a, r): b for a, r, b in conn.execute("SELECT account, resource, balance FROM world_state")}
        offers = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                "SELECT offer_id, seller, account, resource, quantity, price, open_until_tick FROM open_offers"
            )
        }
        participants = {
            row[0]: (row[1], row[2], tuple(row[3]), *row[4:])
            for row in conn.execute(
                "SELECT agent, role, kind, accounts, emits_carbon, critical_load, suspended FROM participants"
            )
        }
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        status = cur.execute("SELECT * FROM grid_status").fetchone()
    return Caches(
        head_seq=head[0] if head else -1,
        head_hash=bytes(head[1]) if head else GENESIS_PREV_HASH,
        balances=balances,
        offers=offers,
        participants=participants,
        status=status,
    )


def rebuilt_status(report: Rehydration) -> dict[str, Any]:
    s = report.state
    return {
        "head_seq": report.head_seq,
        "head_hash": report.head_hash.hex(),
        "tick": s.tick,
        "policy_version": s.policy_version,
        "policy": s.policy,
        "breaker_open": s.breaker_open,
        "breaker_reason": s.breaker_reason,
        "telemetry": s.telemetry.as_dict(),
        "shortfall": [[a, r, u] for (a, r), u in sorted(s.shortfall.items())],
    }


def _cached_status(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "head_seq": status["head_seq"],
        "head_hash": bytes(status["head_hash"]).hex(),
        "tick": status["tick"],
        "policy_version": status["policy_version"],
        "policy": orjson.loads(status["policy_json"]),
        "breaker_open": status["breaker_open"],
        "breaker_reason": status["breaker_reason"],
        "telemetry": orjson.loads(status["telemetry_json"]),
        "shortfall": orjson.loads(status["shortfall_json"]),
    }


def compare(report: Rehydration, caches: Caches) -> None:
    """Every difference between the rebuilt state and the caches (the first 1,000 kept, all counted)."""
    s = report.state
    offers = {
        o.offer_id: (o.seller, o.account, o.resource, o.quantity, o.price, o.open_until_tick) for o in s.offers.values()
    }
    agents = {
        name: (a.role, a.kind, a.accounts, a.emits_carbon, a.critical_load, a.suspended) for name, a in s.agents.items()
    }
    _diff(report, "world_state", {f"{r}@{a}": v for (a, r), v in caches.balances.items()},
          {f"{r}@{a}": v for (a, r), v in s.balances.items()}, missing=0)  # fmt: skip
    _diff(report, "open_offers", caches.offers, offers)
    _diff(report, "participants", caches.participants, agents)
    cached_status = _cached_status(caches.status) if caches.status else {}
    status = rebuilt_status(report) if report.head_seq >= 0 else {}
    _diff(report, "grid_status", cached_status, status)


def _diff(
    report: Rehydration, table: str, cached: dict[Any, Any], rebuilt: dict[Any, Any], missing: Any = None
) -> None:
    for key in sorted(set(cached) | set(rebuilt), key=str):
        old, new = cached.get(key, missing), rebuilt.get(key, missing)
        if old != new:
            report.difference_count += 1
            if len(report.differences) < DIFFERENCES_REPORTED_MAX:
                report.differences.append(Difference(f"{table} {key}", _show(old), _show(new)))


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# --- runs, anomalies and alerts ------------------------------------------------------------------


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def start_run(conn: psycopg.Connection[Any], run_id: str, kind: str) -> None:
    conn.execute("INSERT INTO replay_runs (run_id, kind) VALUES (%s, %s)", (run_id, kind))
    conn.commit()


def finish_run(
    conn: psycopg.Connection[Any], run_id: str, anomalies: list[Anomaly], anomaly_count: int, summary: dict[str, Any]
) -> None:
    """Record the run's outcome and its anomalies (the first 1,000) in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        kept = anomalies[:ANOMALIES_RECORDED_MAX]
        if kept:
            cur.executemany(
                "INSERT INTO replay_anomalies (run_id, seq, reason, detail) VALUES (%s, %s, %s, %s)",
                [(run_id, a.seq, a.reason, a.detail) for a in kept],
            )
        cur.execute(
            "UPDATE replay_runs SET finished_at = now(), entries = %s, entries_per_s = %s, anomalies = %s, ok = %s, "
            "report_json = %s WHERE run_id = %s",
            (
                summary["entries"],
                summary.get("entries_per_s"),
                anomaly_count,
                summary["ok"],
                orjson.dumps(summary, default=str).decode(),
                run_id,
            ),
        )


def raise_alerts(settings: Settings, run_id: str, anomalies: list[Anomaly], policy_version: int) -> int:
    """One critical alert and one incident per anomalous seq (the first 20); return how many were sent."""
    by_seq: dict[int | None, list[Anomaly]] = {}
    for a in anomalies:
        by_seq.setdefault(a.seq, []).append(a)
    alerts: list[tuple[bytes | None, bytes | None]] = []
    incidents: list[tuple[bytes | None, bytes | None]] = []
    version = validator_version()
    for seq, found in list(by_seq.items())[:ALERTS_SENT_MAX]:
        where = f"seq {seq}" if seq is not None else "derived state"
        title = f"Replay anomaly at {where}: {', '.join(sorted({a.reason for a in found}))}"
        detail = f"run {run_id}\n" + "\n".join(f"{a.reason}: {a.detail}" for a in found)
        if len(by_seq) > ALERTS_SENT_MAX:
            detail += f"\n({len(by_seq)} places in all; see replay_anomalies for run {run_id})"
        alert_id = f"anomaly:{run_id}:{seq if seq is not None else 'state'}"
        alert = AlertRecord(
            alert_id=alert_id,
            kind="replay_anomaly",
            severity="critical",
            title=title[:256],
            detail=detail[:DETAIL_CHARS_MAX],
            seq=seq,
            validator_version=version,
            policy_version=policy_version,
        )
        incident = IncidentRecord(
            incident_id=alert_id,
            kind="replay_anomaly",
            title=title[:256],
            detail=detail[:DETAIL_CHARS_MAX],
            seq=seq,
            validator_version=version,
            policy_version=policy_version,
        )
        alerts.append((alert_id.encode(), alert.model_dump_json().encode()))
        incidents.append((alert_id.encode(), incident.model_dump_json().encode()))
    if alerts:
        producer = proposal_producer(settings.kafka_bootstrap)
        send_all(producer, settings.topic("alerts"), alerts)
        send_all(producer, settings.topic("incidents"), incidents)
    return len(alerts)


# --- the command's work --------------------------------------------------------------------------


def rehydrate(settings: Settings, wanted: FromCheckpoint = None, progress: bool = True) -> Rehydration:
    """Rebuild the derived state from the ledger, check it, compare it with the caches, record the run."""
    database_url = settings.database_url
    run_id = new_run_id("rehydrate")
    with psycopg.connect(database_url) as conn:
        start_run(conn, run_id, "rehydrate")
        caches = read_caches(conn)
        report = Rehydration(run_id, Start(State()))
        report.start = choose_start(conn, report, wanted, caches.head_seq)
        total = caches.head_seq + 1 - report.state.seq_next
        with tqdm(total=total, desc="rehydrate", unit="entry", unit_scale=True, disable=not progress) as bar:
            fold(database_url, conn, report, caches.head_seq, bar)
        if report.head_seq < 0 and report.start.checkpoint_seq is not None:
            report.head_seq, report.head_hash = report.start.checkpoint_seq, report.start.prev_hash
        compare(report, caches)
        finish_run(conn, run_id, report.anomalies, report.anomaly_count, summary(report))
    if report.anomalies:
        raise_alerts(settings, run_id, report.anomalies, report.state.policy_version)
    logger.info(
        "rehydrated",
        extra={
            "run_id": run_id,
            "entries": report.entries,
            "entries_per_s": round(report.entries_per_s),
            "ok": report.ok,
        },
    )
    return report


def summary(report: Rehydration) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "from_checkpoint": report.start.checkpoint_seq,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash.hex(),
        "entries": report.entries,
        "seconds": round(report.seconds, 3),
        "entries_per_s": round(report.entries_per_s),
        "anomalies": [[a.seq, a.reason, a.detail] for a in report.anomalies],
        "anomaly_count": report.anomaly_count,
        "differences": report.difference_count,
        "ok": report.ok,
    }
