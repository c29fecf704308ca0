"""``gridgov bench``: the validator's throughput and latency, with its baseline and the machine's ceilings
measured the same way in the same run (these machines are noisy; ratios are what to compare). Every
row's rate is also given as a ratio to the naive baseline and to the lower of the two ceilings.

Rows:
- ceiling, consume-only: confluent-kafka reads the proposals and does nothing else.
- ceiling, bulk-insert-only: COPY of ledger-sized rows into Postgres in the validator's batch size.
- validator: the real loop (auth, law, hash chain, one transaction per batch with its position, relay),
  with the peak resident memory of this process (it decides) and of its writer process (it commits
  and relays, ``streams.writer``) during the row.
- rehydrate: ``gridgov rehydrate``'s work from T=0 over the ledger the validator row wrote, every check.
- replay: ``gridgov replay --into``'s work: the proposals topic re-decided into a fresh database and
  compared entry by entry with the validator row's ledger.
- naive baseline: the same loop as the validator row with one transaction per proposal.
- latency: produce→commit p50/p99 at a fixed offered load.
- machine: the core count, and the load average before the run against it.
- CPU: where the machine's CPU time went during the validator row (this process, its writer,
  Postgres, the Kafka broker, anything else), per proposal: on a saturated machine the sum over
  processes, not one process, bounds the rate.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import re
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from connectors.kafka_admin import delete_topics, ensure_topics
from connectors.kafka_io import proposal_producer, send_proposals
from connectors.migrate import apply_migrations
from connectors.progress import progress_bar
from core.config import Settings
from core.kafka_access import KafkaAccess
from streams.rehydrate import rehydrate
from streams.replay import replay
from streams.validator import BATCH_COUNT_MAX, LatencySamples, open_validator
from streams.workload import Workload, synthetic_operator
from streams.writer import ProcessSink

SECRET = bytes(range(32))
VERSION = "bench"  # the stamp of every bench ledger: the replay's must equal the validator row's
LATENCY_RATE_PER_S = 10_000
LATENCY_WINDOW_S = 60.0  # steady state: the percentiles are over this window after the warm-up
LATENCY_WARMUP_S = 2.0
PACE_SLEEP_S = 0.001
NAIVE_COUNT = 5_000
STALL_S = 30.0  # no offset decided for this long: the workload did not arrive
QUIET_LOAD_PER_CORE = 0.5  # a 1-minute load average below this per core before the run: "quiet"
KIB_PER_MIB = 1024

Kind = Literal["ceiling", "baseline", "measured"]


class BenchError(RuntimeError):
    """The bench cannot stand behind a figure: a measured path failed its checks, or a reading is missing."""


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    elapsed_s: float
    note: str = ""
    kind: Kind = "measured"

    @property
    def rate_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s else 0.0


def _tag() -> str:
    return f"bench_{secrets.token_hex(4)}"


@contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """An empty database ``name`` on ``server_url``'s cluster, dropped afterwards; yields its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch(settings: Settings, prefixes_kept: list[str] | None = None) -> Iterator[Settings]:
    """A fresh database and topic prefix for one bench run; the database is dropped afterwards, and the
    topics deleted too, or their prefix appended to ``prefixes_kept`` for the caller to delete once
    everything is measured: the broker removes a deleted topic's files a minute later, and a run's
    gigabyte going then fell into the next run's measurements."""
    tag = _tag()
    with fresh_database(settings.database_url, tag) as url:
        apply_migrations(url)
        # The synthetic stream's operator founds the benchmark's ledger.
        founder = synthetic_operator(SECRET).public_key
        s = settings.replace(topic_prefix=tag, database_url_external=url, founding_operators=founder)
        try:
            ensure_topics(s)
            yield s
        finally:
            if prefixes_kept is None:
                delete_topics(s, tag)
            else:
                prefixes_kept.append(tag)


def delete_scratch_topics(settings: Settings, prefixes: list[str]) -> None:
    """The topics of the scratch runs that kept them (a run leaves about a gigabyte behind)."""
    for prefix in prefixes:
        delete_topics(settings, prefix)


def send_workload(s: Settings, w: Workload, count: int) -> int:
    """Produce ``w``'s genesis and ``count`` messages to the proposals topic; return how many offsets."""
    raws = [w.genesis()] + [m.raw for m in w.messages(count)]
    send_proposals(s, raws, linger_ms=20)
    return len(raws)


def consume_only(s: Settings, count: int) -> Row:
    consumer = Consumer(s.kafka("admin").config(**{"group.id": "bench-ceiling", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(s.topic("proposals"), 0, 0)])
    seen, started = 0, time.perf_counter()
    while seen < count:
        seen += len(consumer.consume(num_messages=BATCH_COUNT_MAX, timeout=1.0))
    elapsed = time.perf_counter() - started
    consumer.close()
    return Row("ceiling: consume-only", seen, elapsed, "Kafka read, no work", "ceiling")


def insert_only(s: Settings, count: int) -> Row:
    row = (0, 0, "p", "transfer", "agent001", 1, 11, "v", 1, "[]", "x" * 260, "s" * 64, b"\0" * 32, b"\0" * 32)
    with psycopg.connect(s.database_url) as conn:
        # A logged table with the ledger's indexes (not TEMP, which skips the WAL): a fair ceiling.
        conn.execute("CREATE TABLE ledger_copy (LIKE ledger INCLUDING DEFAULTS INCLUDING INDEXES)")
        started = time.perf_counter()
        for first in range(0, count, BATCH_COUNT_MAX):
            with conn.cursor().copy(
                "COPY ledger_copy (seq, source_offset, proposal_id, kind, agent, tick, expires_tick, "
                "validator_version, policy_version, effects_json, proposal_json, sig, prev_hash, hash) "
                "FROM STDIN"
            ) as copy:
                for i in range(first, min(count, first + BATCH_COUNT_MAX)):
                    copy.write_row((i, i, f"p-{i}", *row[3:]))
            conn.commit()
        elapsed = time.perf_counter() - started
    return Row("ceiling: bulk-insert-only", count, elapsed, f"COPY, {BATCH_COUNT_MAX} rows/tx", "ceiling")


@dataclass(frozen=True)
class ValidatorRun:
    elapsed_s: float  # from start until every offset is decided and committed
    writer_kib: int  # the peak resident memory of the validator's writer process meanwhile
    cpu: CpuSplit  # where the machine's CPU time went meanwhile


def run_validator(s: Settings, total: int, batch_count: int = BATCH_COUNT_MAX) -> ValidatorRun:
    """The validator over the first ``total`` offsets, timed, with its writer's memory and the CPU split."""
    v = open_validator(s, SECRET, version=VERSION, batch_count_max=batch_count)
    assert isinstance(v.sink, ProcessSink), "open_validator commits in the writer process"
    before = cpu_ticks_by_process()
    started = time.perf_counter()
    with progress_bar(total=total, desc="validator", unit="proposal", leave=False) as bar:
        v.run_until(total, STALL_S, progress=lambda done: bar.update(done - bar.n))
    elapsed = time.perf_counter() - started
    cpu = CpuSplit.between(before, cpu_ticks_by_process(), v.sink.pid, total, elapsed)
    writer_kib = _proc_status_kib("VmHWM", str(v.sink.pid))
    v.close()
    return ValidatorRun(elapsed, writer_kib, cpu)


def validator_row(s: Settings, total: int) -> tuple[Row, CpuSplit]:
    """The validator over the first ``total`` offsets, and the peak RSS of this process (which decides)
    and of the writer process (which commits and relays) meanwhile; and where the CPU went."""
    start_kib = reset_peak_rss_kib()
    measured = run_validator(s, total)
    note = (
        f"peak RSS {peak_rss_kib() / KIB_PER_MIB:.0f} MiB ({start_kib / KIB_PER_MIB:.0f} MiB at the row's start), "
        f"writer process {measured.writer_kib / KIB_PER_MIB:.0f} MiB"
    )
    row = Row("validator (auth + law + chain + exactly-once)", total, measured.elapsed_s, note)
    return row, measured.cpu


# --- where the CPU goes ---------------------------------------------------------------------------

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat after the command name's closing parenthesis: utime and stime are fields 14 and 15.
_UTIME_INDEX, _STIME_INDEX = 11, 12
CPU_GROUPS = ("validator", "writer", "postgres", "kafka", "other")
THROUGHPUT_GOAL_PER_S = 50_000  # the rate the CPU line says how much time per proposal leaves


def cpu_ticks_by_process() -> dict[int, tuple[str, int]]:
    """Every process's command name and CPU time so far (user + system, clock ticks), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        found[int(stat.parent.name)] = (name, int(rest[_UTIME_INDEX]) + int(rest[_STIME_INDEX]))
    return found


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds per group of processes over a stretch of ``count`` proposals in ``elapsed_s``."""

    seconds: dict[str, float]
    count: int
    elapsed_s: float

    @classmethod
    def between(
        cls,
        before: dict[int, tuple[str, int]],
        after: dict[int, tuple[str, int]],
        writer_pid: int,
        count: int,
        elapsed_s: float,
    ) -> CpuSplit:
        seconds = dict.fromkeys(CPU_GROUPS, 0.0)
        for pid, (name, ticks) in after.items():
            spent = ticks - before.get(pid, (name, 0))[1]  # a process started meanwhile: all of it
            seconds[_cpu_group(pid, name, writer_pid)] += spent / _CLOCK_TICKS_PER_S
        return cls(seconds, count, elapsed_s)

    def line(self, cores: int) -> str:
        per = ", ".join(f"{g} {self.seconds[g] / self.count * 1e6:.1f}" for g in CPU_GROUPS)
        total_s = sum(self.seconds.values())
        rate = self.count / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"CPU per proposal in the validator row (µs): {per}; {total_s / self.count * 1e6:.1f} in all, "
            f"{total_s / self.elapsed_s:.2f} of {cores} cores busy at {rate:,.0f}/s "
            f"({THROUGHPUT_GOAL_PER_S:,}/s on {cores} cores leaves {cores * 1e6 / THROUGHPUT_GOAL_PER_S:.0f} µs "
            "per proposal for everything)"
        )


def _cpu_group(pid: int, name: str, writer_pid: int) -> str:
    if pid == os.getpid():
        return "validator"
    if pid == writer_pid:
        return "writer"
    return {"postgres": "postgres", "java": "kafka"}.get(name, "other")


def reset_peak_rss_kib() -> int:
    """Reset the kernel's peak-RSS mark of this process to what it holds now (Linux), and return that.

    glibc first gives the OS back the heap it keeps once freed: generating the workload leaves ~4 KiB
    per proposal there, which the validator would reuse unseen, understating its memory.
    """
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_kib("VmRSS")


def peak_rss_kib() -> int:
    """This process's peak resident memory since the last ``reset_peak_rss_kib``."""
    return _proc_status_kib("VmHWM")


def _proc_status_kib(field: str, pid: str = "self") -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if found is None:
        raise BenchError(f"/proc/{pid}/status has no {field}")
    return int(found[1])


def rehydrate_row(s: Settings) -> Row:
    """``gridgov rehydrate`` from T=0 over the ledger in ``s``: the run record, the caches, the fold with
    every entry's and checkpoint's checks, the comparison with the caches; timed end to end."""
    started = time.perf_counter()
    report = rehydrate(s)
    elapsed_s = time.perf_counter() - started
    if not report.ok:
        raise BenchError(f"rehydrate found {report.anomaly_count} anomalies, {report.difference_count} differences")
    note = f"entries; the fold alone {report.entries_per_s:,.0f}/s"
    return Row("rehydrate from T=0 (every check)", report.entries, elapsed_s, note)


def replay_row(s: Settings, to_offset: int) -> Row:
    """``gridgov replay --into`` of offsets [0, ``to_offset``) into a fresh database, compared with the
    ledger in ``s`` entry by entry; timed end to end (the target's migrations included)."""
    with fresh_database(s.database_url, _tag()) as target_url:
        started = time.perf_counter()
        result = replay(s, target_url, SECRET, VERSION, to_offset)
        elapsed_s = time.perf_counter() - started
    if not result.ok:
        raise BenchError(f"the replay is not identical to the validator's ledger: {result.comparison}")
    return Row(
        "replay into a fresh database (compared)",
        result.to_offset,
        elapsed_s,
        "offsets; migrations, decide, compare: same hashes",
    )


@dataclass(frozen=True)
class Latency:
    """Produce→commit percentiles (ms) of the proposals produced after the warm-up, at a fixed offered rate."""

    rate_per_s: int
    window_s: float
    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float

    def line(self) -> str:
        return (
            f"latency produce→commit at {self.rate_per_s:,}/s offered, {self.count:,} proposals in the "
            f"{self.window_s:g} s after a {LATENCY_WARMUP_S:g} s warm-up: p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, p99.9 {self.p999_ms:.1f} ms"
        )


def percentile(sorted_samples: list[int], fraction: float) -> float:
    """The nearest-rank percentile of samples sorted ascending."""
    assert sorted_samples, "a percentile of no samples"
    return float(sorted_samples[min(len(sorted_samples) - 1, int(len(sorted_samples) * fraction))])


def latency(s: Settings, w: Workload, rate_per_s: int, window_s: float, offset: int) -> Latency:
    """Offer ``rate_per_s`` for the warm-up and then ``window_s`` from another process while the
    validator runs here; the percentiles of produce→commit (Kafka CreateTime to the batch's Postgres
    commit) over the window."""
    count = int(rate_per_s * (LATENCY_WARMUP_S + window_s))
    raws = [m.raw for m in w.messages(count)]
    v = open_validator(s, SECRET, version=VERSION)
    v.latencies = samples = LatencySamples()
    # A separate process: a producer pacing itself in this interpreter would compete for the GIL.
    producer = multiprocessing.get_context("spawn").Process(
        target=paced_produce, args=(s.kafka("producer"), s.topic("proposals"), raws, rate_per_s)
    )
    producer.start()
    v.run_until(offset + count, STALL_S)
    producer.join(timeout=30)
    v.close()
    # Steady state: the first seconds include the consumer's first fetches, not the validator's work.
    steady_from_ms = min(samples.produced_ms) + LATENCY_WARMUP_S * 1000
    steady = sorted(
        lat for produced, lat in zip(samples.produced_ms, samples.latency_ms, strict=True) if produced >= steady_from_ms
    )
    return Latency(
        rate_per_s,
        window_s,
        len(steady),
        statistics.median(steady),
        percentile(steady, 0.99),
        percentile(steady, 0.999),
    )


def paced_produce(kafka: KafkaAccess, topic: str, raws: list[bytes], rate_per_s: int) -> None:
    """Send ``raws`` at ``rate_per_s``: each wake-up sends what is due by then, and sleeps are at least
    PACE_SLEEP_S, so the load generator (one sleep per message cost it half a core at 5,000/s) leaves
    the cores to what is measured."""
    producer = proposal_producer(kafka, linger_ms=1)
    started, sent = time.perf_counter(), 0
    while sent < len(raws):
        due = min(len(raws), int((time.perf_counter() - started) * rate_per_s) + 1)
        for raw in raws[sent:due]:
            producer.produce(topic, raw)
        sent = due
        producer.poll(0)
        time.sleep(max(PACE_SLEEP_S, started + sent / rate_per_s - time.perf_counter()))
    producer.flush(30)


def naive_row(settings: Settings, prefixes_kept: list[str]) -> Row:
    with scratch(settings, prefixes_kept) as s:
        total = send_workload(s, Workload(SECRET, 50, 2, "naive"), NAIVE_COUNT)
        elapsed_s = run_validator(s, total, batch_count=1).elapsed_s
        return Row("naive baseline (1 tx per proposal)", total, elapsed_s, kind="baseline")


def machine_line(cores: int, usable_cores: int, load_avg: tuple[float, float, float]) -> str:
    """The core count and the load average before the run against it: a fact, not a verdict."""
    per_core = load_avg[0] / cores
    quiet = "quiet (below" if per_core < QUIET_LOAD_PER_CORE else "busy (at or above"
    return (
        f"machine: {cores} cores ({usable_cores} usable by this process); load average before the run "
        f"{load_avg[0]:.2f} / {load_avg[1]:.2f} / {load_avg[2]:.2f} (1 / 5 / 15 min): {per_core:.2f} per core "
        f"over the last minute, {quiet} {QUIET_LOAD_PER_CORE:g})"
    )


@dataclass(frozen=True)
class Run:
    """One bench run: the table's rows, the latency at the fixed load, and the machine's facts."""

    rows: list[Row]
    latency: Latency
    machine: list[str]


def bench_workload() -> Workload:
    """The workload of every measured row (the naive baseline's is its own, smaller one)."""
    return Workload(SECRET, agent_count=50, seed=1, run_id="bench")


def run(settings: Settings, count: int, prefixes_kept: list[str], window_s: float = LATENCY_WINDOW_S) -> Run:
    """One run's rows in a scratch database and topics; the topics' prefix goes to ``prefixes_kept``."""
    cores = os.cpu_count() or 1
    machine = machine_line(cores, len(os.sched_getaffinity(0)), os.getloadavg())
    w = bench_workload()
    with scratch(settings, prefixes_kept) as s:
        total = send_workload(s, w, count)
        rows = [consume_only(s, total), insert_only(s, total)]
        validator, cpu = validator_row(s, total)
        rows += [validator, rehydrate_row(s), replay_row(s, total)]
        measured = latency(s, w, LATENCY_RATE_PER_S, window_s, total)
    return Run([*rows, naive_row(settings, prefixes_kept)], measured, [machine, cpu.line(cores)])


def memory_row(settings: Settings, count: int, prefixes_kept: list[str]) -> Row:
    """The validator row alone over ``count`` proposals: its memory must not grow with the count."""
    with scratch(settings, prefixes_kept) as s:
        total = send_workload(s, bench_workload(), count)
        row, _ = validator_row(s, total)
    return Row(f"validator, {total:,} proposals (memory)", row.count, row.elapsed_s, row.note)


def median_run(runs: list[Run]) -> Run:
    """Each row's median rate over ``runs`` (its range in the note), each latency percentile's median."""
    assert runs and len({tuple(r.name for r in run.rows) for run in runs}) == 1, "runs of the same rows"
    rows = []
    for same in zip(*(run.rows for run in runs), strict=True):
        ranked = sorted(same, key=lambda r: r.rate_per_s)
        middle = ranked[(len(ranked) - 1) // 2]  # its note (peak memory) goes with the median's rate
        rate = statistics.median(r.rate_per_s for r in ranked)
        spread = f"{ranked[0].rate_per_s:,.0f}–{ranked[-1].rate_per_s:,.0f}/s"
        note = f"median of {len(runs)}: {spread}; {middle.note}".rstrip("; ")
        rows.append(Row(middle.name, middle.count, middle.count / rate if rate else 0.0, note, middle.kind))
    lat = [run.latency for run in runs]
    measured = Latency(
        lat[0].rate_per_s,
        lat[0].window_s,
        int(statistics.median(x.count for x in lat)),
        statistics.median(x.p50_ms for x in lat),
        statistics.median(x.p99_ms for x in lat),
        statistics.median(x.p999_ms for x in lat),
    )
    return Run(rows, measured, [line for run in runs for line in run.machine])


def render(rows: list[Row], lines: list[str], fsync: str) -> str:
    """The table: every row's rate against the baseline and the lower ceiling; then ``lines``."""
    baseline = next(r for r in rows if r.kind == "baseline")
    ceiling = min((r for r in rows if r.kind == "ceiling"), key=lambda r: r.rate_per_s)
    head = f"{'measurement':48} {'count':>9} {'seconds':>8} {'per second':>11} {'× baseline':>11} {'× ceiling':>10}"
    out = [f"{head}  note"]
    for r in rows:
        baseline_ratio, ceiling_ratio = _ratio(r, baseline), _ratio(r, ceiling)
        out.append(
            f"{r.name:48} {r.count:9d} {r.elapsed_s:8.2f} {r.rate_per_s:11,.0f} "
            f"{baseline_ratio:11.2f} {ceiling_ratio:10.2f}  {r.note}"
        )
    out += lines
    out.append(f"× ceiling: to the lower of the two, {ceiling.name!r}")
    out.append(f"postgres fsync={fsync}; Kafka and Postgres on this machine")
    return "\n".join(out)


def render_run(run: Run, fsync: str, extra: list[Row] | None = None) -> str:
    """A run's table with ``extra`` rows after its own, then its latency and machine lines."""
    return render(run.rows + (extra or []), [run.latency.line(), *run.machine], fsync)


def _ratio(row: Row, reference: Row) -> float:
    return row.rate_per_s / reference.rate_per_s if reference.rate_per_s else 0.0
