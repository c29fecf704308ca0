"""``rehydrate``: rebuild the derived state by folding the ledger, from T=0 or from a checkpoint.

While folding it checks every entry (hash chain, seq continuity, offset order, per-entry
conservation) and every checkpoint it starts from or passes. An entry that fails is not applied: it
becomes an anomaly, recorded in ``replay_anomalies`` and raised as a critical alert and incident.
Then the rebuilt state is compared with the caches the validator keeps (world_state, open_offers,
participants, grid_status) and every difference is reported.

The checks, the checkpoint choice and the cache comparison are ``core.audit``'s, the reads the read
model's (``connectors.readmodel.ledger``): this module adds the run record, the checkpoints passed on
the way, and the alerts. On a 2-core machine that is ~90k entries/s, CPU-bound in this process: the
rows alone read at 150-200k/s (psycopg's COPY parsing) and the fold of entries already in memory runs
at 180k/s (checks, canonical bytes, SHA-256, apply), one after the other. Reading in a second process
measured slower (80-100k/s delivered): with Postgres serving the COPY there is no idle core to take.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psycopg
from tqdm import tqdm

from connectors.kafka_io import proposal_producer, send_all
from connectors.progress import progress_bar
from connectors.readmodel.ledger import PgLedgerReader
from core.audit import (
    Caches,
    CheckedFold,
    Checkpoint,
    Difference,
    Start,
    cache_differences,
    checkpoint_problem,
    choose_start,
    decided_in_order,
)
from core.config import Settings
from core.identities import validator_signer
from core.rows import ConsumedNonce
from core.version import validator_version
from law import State
from law.ledger import GENESIS_PREV_HASH
from law.snapshot import to_json
from schemas.records import AlertRecord, IncidentRecord

logger = logging.getLogger(__name__)

PROGRESS_EVERY_COUNT = 10_000
ANOMALIES_RECORDED_MAX = 1_000
DIFFERENCES_REPORTED_MAX = 1_000
ALERTS_SENT_MAX = 20
DETAIL_CHARS_MAX = 3_900  # AlertRecord.detail allows 4,000

FromCheckpoint = Literal["latest"] | int | None


@dataclass(frozen=True, slots=True)
class Anomaly:
    seq: int | None  # None: a difference that belongs to no single entry
    reason: str
    detail: str


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


# --- the start: T=0 or a checkpoint --------------------------------------------------------------


def choose(
    reader: PgLedgerReader, report: Rehydration, wanted: FromCheckpoint, head_seq: int, validator_key: str
) -> Start:
    """The newest checkpoint at or below ``wanted`` that verifies and the validator (public key
    ``validator_key``) signed; corrupt or unsigned ones are anomalies, skipped."""
    if wanted is None:
        return Start()
    limit = head_seq if wanted == "latest" else min(int(wanted), head_seq)

    def skipped(checkpoint: Checkpoint, reason: str, detail: str) -> None:
        report.add(checkpoint.seq, reason, f"checkpoint {checkpoint.seq}: {detail}; skipped")

    start = choose_start(reader.checkpoints_newest_first(limit), reader.link, skipped, validator_key)
    if start.checkpoint_seq is None:
        logger.warning("no valid checkpoint at or below %s; folding from T=0", limit)
    else:
        logger.info("starting from checkpoint", extra={"seq": start.checkpoint_seq})
    return start


# --- the fold ------------------------------------------------------------------------------------


def fold(reader: PgLedgerReader, report: Rehydration, to_seq: int, bar: tqdm[Any], validator_key: str) -> CheckedFold:
    """Fold what was decided after the start up to entry ``to_seq``, checking each entry, and compare
    every checkpoint passed on the way with the fold at its position."""
    checked = CheckedFold(report.start)
    found = (reader.checkpoint(seq) for seq in reader.checkpoint_seqs(checked.expected_seq, to_seq))
    ahead = deque(sorted((c for c in found if c is not None), key=lambda c: c.seq))
    named = {c.seq for c in ahead}
    linked: dict[int, bytes] = {}  # hashes of the entries the checkpoints ahead name
    started = time.perf_counter()
    for decided in decided_in_order(reader, report.start, to_seq):
        while ahead and decided.source_offset >= ahead[0].next_offset:
            _check_passed_checkpoint(report, ahead.popleft(), linked, validator_key)
        if isinstance(decided, ConsumedNonce):
            checked.consume(decided)
            continue
        for reason, detail in checked.add(decided):
            where = f"entry {decided.proposal_id!r} at offset {decided.source_offset}"
            report.add(decided.seq, reason, f"{detail}; {where} not applied")
        if decided.seq in named:
            linked[decided.seq] = decided.hash
        if checked.entries % PROGRESS_EVERY_COUNT == 0:
            bar.update(PROGRESS_EVERY_COUNT)
    for checkpoint in ahead:
        _check_passed_checkpoint(report, checkpoint, linked, validator_key)
    bar.update(checked.entries % PROGRESS_EVERY_COUNT)
    report.seconds = time.perf_counter() - started
    report.entries, report.head_seq, report.head_hash = checked.entries, checked.head_seq, checked.head_hash
    return checked


def _check_passed_checkpoint(
    report: Rehydration, checkpoint: Checkpoint, linked: dict[int, bytes], validator_key: str
) -> None:
    seq = checkpoint.seq
    if any(a.seq == seq and a.reason.startswith("CHECKPOINT") for a in report.anomalies):
        return  # already reported when the start skipped it
    problem = checkpoint_problem(checkpoint, linked.get(seq), validator_key)
    if problem is not None:
        report.add(seq, problem[0], f"checkpoint {seq}: {problem[1]}")
    elif any(a.seq is not None and a.seq <= seq for a in report.anomalies):
        logger.info("checkpoint %d not compared: an earlier entry was not applied", seq)
    elif checkpoint.state_json != to_json(report.state):
        report.add(seq, "CHECKPOINT_MISMATCH", f"checkpoint {seq} differs from the fold of the ledger up to it")


def compare(report: Rehydration, caches: Caches) -> None:
    """Every difference between the rebuilt state and the caches (the first 1,000 kept, all counted)."""
    for difference in cache_differences(report.state, report.head_seq, report.head_hash, caches):
        report.difference_count += 1
        if len(report.differences) < DIFFERENCES_REPORTED_MAX:
            report.differences.append(difference)


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
        producer = proposal_producer(settings.kafka("validator"))
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
        reader = PgLedgerReader(conn, database_url)
        caches = reader.caches()
        report = Rehydration(run_id, Start())
        validator_key = validator_signer(settings.home).public_key
        report.start = choose(reader, report, wanted, caches.head_seq, validator_key)
        total = caches.head_seq + 1 - report.state.seq_next
        with progress_bar(total=total, enabled=progress, desc="rehydrate", unit="entry", unit_scale=True) as bar:
            fold(reader, report, caches.head_seq, bar, validator_key)
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
