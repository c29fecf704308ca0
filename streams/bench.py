"""``gridgov bench``: the validator's throughput and latency, with its baseline and the machine's ceiling
measured the same way in the same run (these machines are noisy; ratios are what to compare).

Rows:
- ceiling, consume-only: confluent-kafka reads the proposals and does nothing else.
- ceiling, bulk-insert-only: COPY of ledger-sized rows into Postgres in the validator's batch size.
- validator: the real loop (auth, law, hash chain, one transaction per batch with its position, relay).
- naive baseline: the same loop with one transaction per proposal.
- latency: produce→commit p50/p99 at a fixed offered load.
"""

from __future__ import annotations

import multiprocessing
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from tqdm import tqdm

from connectors.kafka_admin import ensure_topics
from connectors.kafka_io import proposal_producer, send_proposals
from connectors.migrate import apply_migrations
from core.config import Settings
from core.kafka_access import KafkaAccess
from streams.validator import BATCH_COUNT_MAX, open_validator
from streams.workload import Workload, synthetic_operator

SECRET = bytes(range(32))
LATENCY_RATE_PER_S = 10_000
LATENCY_DURATION_S = 12.0
LATENCY_WARMUP_S = 2.0
NAIVE_COUNT = 5_000
STALL_S = 30.0  # no offset decided for this long: the workload did not arrive


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


@contextmanager
def scratch(settings: Settings) -> Iterator[Settings]:
    """A fresh database and topic prefix for one bench run, dropped afterwards."""
    tag = f"bench_{secrets.token_hex(4)}"
    server = settings.database_url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tag)))
    url = server.rsplit("/", 1)[0] + f"/{tag}"
    try:
        apply_migrations(url)
        # The synthetic stream's operator founds the benchmark's ledger.
        founder = synthetic_operator(SECRET).public_key
        s = settings.replace(topic_prefix=tag, database_url_external=url, founding_operators=founder)
        ensure_topics(s)
        yield s
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(tag)))


def consume_only(s: Settings, count: int) -> Row:
    consumer = Consumer(s.kafka("admin").config(**{"group.id": "bench-ceiling", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(s.topic("proposals"), 0, 0)])
    seen, started = 0, time.perf_counter()
    while seen < count:
        seen += len(consumer.consume(num_messages=BATCH_COUNT_MAX, timeout=1.0))
    elapsed = time.perf_counter() - started
    consumer.close()
    return Row("ceiling: consume-only", seen, elapsed, "Kafka read, no work")


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
    return Row("ceiling: bulk-insert-only", count, elapsed, f"COPY, {BATCH_COUNT_MAX} rows/tx")


def run_validator(s: Settings, total: int, batch_count: int = BATCH_COUNT_MAX) -> float:
    """Seconds from start until ``total`` offsets are decided and committed."""
    v = open_validator(s, SECRET, version="bench", batch_count_max=batch_count)
    started = time.perf_counter()
    with tqdm(total=total, desc="validator", unit="proposal", leave=False) as bar:
        v.run_until(total, STALL_S, progress=lambda done: bar.update(done - bar.n))
    elapsed = time.perf_counter() - started
    v.close()
    return elapsed


def latency(s: Settings, w: Workload, rate_per_s: int, duration_s: float, offset: int) -> tuple[float, float, int]:
    """Offer ``rate_per_s`` for ``duration_s`` from another process while the validator runs here;
    return p50/p99 produce→commit in ms (Kafka CreateTime to the batch's Postgres commit)."""
    count = int(rate_per_s * duration_s)
    raws = [m.raw for m in w.messages(count)]
    v = open_validator(s, SECRET, version="bench")
    v.latencies_ms = []
    # A separate process: a producer pacing itself in this interpreter would compete for the GIL.
    producer = multiprocessing.get_context("spawn").Process(
        target=paced_produce, args=(s.kafka("producer"), s.topic("proposals"), raws, rate_per_s)
    )
    producer.start()
    v.run_until(offset + count, STALL_S)
    producer.join(timeout=30)
    v.close()
    # Steady state: the first seconds include the consumer's first fetches, not the validator's work.
    first_ms = min(produced_ms for produced_ms, _ in v.latencies_ms)
    samples = sorted(lat for produced_ms, lat in v.latencies_ms if produced_ms >= first_ms + LATENCY_WARMUP_S * 1000)
    return statistics.median(samples), samples[int(len(samples) * 0.99)], len(samples)


def paced_produce(kafka: KafkaAccess, topic: str, raws: list[bytes], rate_per_s: int) -> None:
    producer = proposal_producer(kafka, linger_ms=1)
    started = time.perf_counter()
    for i, raw in enumerate(raws):
        delay_s = started + i / rate_per_s - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)
        producer.produce(topic, raw)
        producer.poll(0)
    producer.flush(30)


def run(settings: Settings, count: int) -> list[Row | str]:
    w = Workload(SECRET, agent_count=50, seed=1, run_id="bench")
    raws = [w.genesis()] + [m.raw for m in w.messages(count)]
    out: list[Row | str] = []
    with scratch(settings) as s:
        send_proposals(s, raws, linger_ms=20)
        out.append(consume_only(s, len(raws)))
        out.append(insert_only(s, len(raws)))
        out.append(Row("validator (auth + law + chain + exactly-once)", len(raws), run_validator(s, len(raws))))
        p50, p99, n = latency(s, w, LATENCY_RATE_PER_S, LATENCY_DURATION_S, len(raws))
        out.append(
            f"latency produce→commit at {LATENCY_RATE_PER_S}/s offered, {n} proposals after a "
            f"{LATENCY_WARMUP_S:g} s warm-up: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    with scratch(settings) as s:
        naive = [w.genesis()] + [m.raw for m in Workload(SECRET, 50, 2, "naive").messages(NAIVE_COUNT)]
        send_proposals(s, naive, linger_ms=20)
        out.append(Row("naive baseline (1 tx per proposal)", len(naive), run_validator(s, len(naive), batch_count=1)))
    return out


def render(rows: list[Row | str], fsync: str) -> str:
    table = [r for r in rows if isinstance(r, Row)]
    validator_rate = next(r.rate for r in table if r.name.startswith("validator"))
    lines = [f"{'measurement':48} {'count':>9} {'seconds':>8} {'per second':>11} {'× validator':>11}  note"]
    for r in table:
        ratio = r.rate / validator_rate if validator_rate else 0
        lines.append(f"{r.name:48} {r.count:9d} {r.seconds:8.2f} {r.rate:11,.0f} {ratio:11.2f}  {r.note}")
    lines += [r for r in rows if isinstance(r, str)]
    lines.append(f"postgres fsync={fsync}; Kafka and Postgres on this machine")
    return "\n".join(lines)
