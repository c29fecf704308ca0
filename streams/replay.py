"""``replay``: rebuild a ledger from the proposals topic into another database and compare it with the
live one; or replay the same proposals under another version of the law and diff the outcomes.

Same law: a Validator runs in this process against the target database, under its own consumer group
(``replay-…``, reset to earliest through the admin API, as an operator would with Kafka's
``kafka-consumer-groups --reset-offsets``); its position in the fresh database starts at 0, so it
decides every offset again. Its derived records go to throwaway topics (``{prefix}.replay-….*``),
never to the live ones the sinks read. With the same law and the same version stamp, every entry's
hash, and so the head hash, must come out identical.

Other law: the code at a git revision runs in its own process from a temporary worktree, so the
version it stamps is its own. It reads a copy of the proposals topic up to the bound (offsets
preserved and checked), so it stops exactly there and its records stay out of the live topics.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tqdm import tqdm

from connectors.kafka_admin import admin_client, delete_topics, ensure_topics, reset_group_offsets
from connectors.kafka_io import proposal_producer
from connectors.migrate import apply_migrations
from core.config import REPO_ROOT, Settings
from streams.rehydrate import Anomaly, finish_run, new_run_id, raise_alerts, start_run
from streams.validator import ValidatorStalled, open_validator

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0
CONSUME_WAIT_S = 0.5
STALL_S = 60.0  # no new offset decided for this long: the topic is shorter than the bound, or stuck
GIT_TIMEOUT_S = 120
POLL_EVERY_S = 0.25
IDLE_EXIT_S = 3
FETCH_COUNT = 10_000
REPORTED_MAX = 1_000


class ReplayError(RuntimeError):
    pass


# --- settings whose derived topics are not the live ones -----------------------------------------


class ReplaySettings(Settings):
    """Reads the live proposals topic; publishes everything else under ``output_prefix``."""

    output_prefix: str = ""  # not a variable: set only by replay_settings

    def topic(self, name: str) -> str:
        return super().topic(name) if name == "proposals" else f"{self.output_prefix}.{name}"


def replay_settings(live: Settings, target_url: str, output_prefix: str) -> ReplaySettings:
    fields = {**live.model_dump(), "database_url_external": target_url}
    return ReplaySettings(**fields, output_prefix=output_prefix)


def delete_group(bootstrap: str, group: str) -> None:
    admin = admin_client(bootstrap)  # held until the result: a collected client never resolves its futures
    admin.delete_consumer_groups([group], request_timeout=ADMIN_TIMEOUT_S)[group].result(timeout=ADMIN_TIMEOUT_S)


def _delete_group_if_any(bootstrap: str, group: str) -> None:
    """Delete a group the other process may or may not have created before it stopped."""
    try:
        delete_group(bootstrap, group)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise


# --- bounds and targets --------------------------------------------------------------------------


def live_position(live_url: str, topic: str) -> int:
    """How far the live validator has decided ``topic``: its stored next offset."""
    with psycopg.connect(live_url) as conn:
        row = conn.execute("SELECT max(next_offset) FROM consumer_position WHERE topic = %s", (topic,)).fetchone()
    if row is None or row[0] is None:
        raise ReplayError(f"the live database has no position for {topic}: nothing was decided yet")
    return int(row[0])


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "gridgov-replay-probe"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=ADMIN_TIMEOUT_S)
    finally:
        consumer.close()
    if low != 0:
        raise ReplayError(f"{topic} starts at offset {low}: retention removed history a replay needs")
    return int(high)


def require_empty(target_url: str) -> None:
    """Refuse a target that already holds a ledger: a replay decides every offset from 0."""
    with psycopg.connect(target_url) as conn:
        exists = conn.execute("SELECT to_regclass('ledger') IS NOT NULL").fetchone()
        count = conn.execute("SELECT count(*) FROM ledger").fetchone() if exists and exists[0] else (0,)
    if count and count[0]:
        raise ReplayError(f"the target already holds {count[0]} ledger entries: replay into a fresh database")


# --- same law, in this process -------------------------------------------------------------------


def run_same_law(live: Settings, target_url: str, to_offset: int, secret: bytes, version: str, run_id: str) -> None:
    """Decide offsets [0, to_offset) of the live proposals topic into ``target_url``."""
    group = f"gridgov-{run_id}"
    settings = replay_settings(live, target_url, f"{live.topic_prefix}.{run_id}")
    ensure_topics(settings)
    reset_group_offsets(settings.kafka_bootstrap, group, live.topic("proposals"), "earliest")
    validator = open_validator(settings, secret, group_id=group, version=version)
    try:
        with tqdm(total=to_offset, desc="replay", unit="offset", unit_scale=True) as bar:
            # Beyond the bound is the live validator's future, not this replay's.
            validator.run_until(to_offset, STALL_S, progress=lambda done: bar.update(done - bar.n))
        validator.relay.flush()
    except ValidatorStalled as exc:
        raise ReplayError(f"{exc}: the topic is shorter than the bound, or stuck") from exc
    finally:
        validator.close()
        delete_group(settings.kafka_bootstrap, group)
        delete_topics(settings.kafka_bootstrap, settings.output_prefix)


# --- another law, in its own process -------------------------------------------------------------


@contextmanager
def worktree(rev: str) -> Iterator[tuple[Path, str]]:
    """A detached git worktree of ``rev`` (removed afterwards) and its full commit id."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(tempfile.gettempdir()) / f"grid-law-{commit[:12]}-{secrets.token_hex(3)}"
    _git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path, commit
    finally:
        _git("worktree", "remove", "--force", str(path))


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise ReplayError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def mirror_proposals(bootstrap: str, source: str, dest: str, to_offset: int) -> None:
    """Copy offsets [0, to_offset) of ``source`` into the empty ``dest``; each must land at its own offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "gridgov-replay-mirror",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(source, 0, 0)])
    producer = proposal_producer(bootstrap, linger_ms=20)
    misplaced: list[str] = []
    expected, last_progress = 0, time.monotonic()
    try:
        with tqdm(total=to_offset, desc="copy proposals", unit="msg", unit_scale=True) as bar:
            while expected < to_offset:
                if time.monotonic() - last_progress > STALL_S:
                    raise ReplayError(f"{source} ended at offset {expected}, before {to_offset}")
                for msg in _consume(consumer):
                    last_progress = time.monotonic()
                    if msg.offset() != expected:
                        raise ReplayError(f"{source} has a gap at offset {expected}: cannot preserve offsets")
                    _produce(producer, dest, msg, misplaced)
                    expected += 1
                    if expected == to_offset:
                        break
                bar.update(expected - bar.n)
        if producer.flush(ADMIN_TIMEOUT_S) > 0:
            raise ReplayError("copy of the proposals not acknowledged in time")
    finally:
        consumer.close()
    if misplaced:
        raise ReplayError(f"{len(misplaced)} copied proposals landed at other offsets: {misplaced[:3]}")


def _consume(consumer: Consumer) -> list[Message]:
    messages = consumer.consume(num_messages=FETCH_COUNT, timeout=CONSUME_WAIT_S)
    good = [m for m in messages if m.error() is None]
    errors = [e for m in messages if (e := m.error()) is not None and e.code() != KafkaError._PARTITION_EOF]
    if errors:
        raise ReplayError(f"reading the proposals failed: {errors[0]}")
    return good


def _produce(producer: Any, dest: str, msg: Message, misplaced: list[str]) -> None:
    source_offset = msg.offset()

    def delivered(err: KafkaError | None, copied: Message) -> None:
        if err is not None or copied.offset() != source_offset:
            misplaced.append(f"{source_offset} -> {err or copied.offset()}")

    while True:
        try:
            producer.produce(
                dest, value=msg.value(), key=msg.key(), timestamp=msg.timestamp()[1], on_delivery=delivered
            )
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


def run_other_law(live: Settings, target_url: str, to_offset: int, secret: bytes, rev: str, run_id: str) -> str:
    """Decide offsets [0, to_offset) with the law at ``rev``, in its own process; return its commit."""
    prefix = f"{live.topic_prefix}.cf-{run_id}"
    scratch = live.replace(topic_prefix=prefix)
    ensure_topics(scratch)
    try:
        mirror_proposals(live.kafka_bootstrap, live.topic("proposals"), scratch.topic("proposals"), to_offset)
        with worktree(rev) as (path, commit):
            _run_validator_process(path, scratch, target_url, secret, to_offset, group=f"gridgov-{run_id}")
    finally:
        delete_topics(live.kafka_bootstrap, prefix)
        _delete_group_if_any(live.kafka_bootstrap, f"gridgov-{run_id}")
    return commit


def _run_validator_process(
    code: Path, scratch: Settings, target_url: str, secret: bytes, to_offset: int, group: str
) -> None:
    child = scratch.replace(
        database_url_external=target_url,
        key_secret=secret.hex(),
        log_level="WARNING",
        validator_version=None,  # unset: the revision stamps its own commit
    )
    env = {**os.environ, **child.as_env(), "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-m", "gridgov.cli", "validator", "--group", group]
    cmd += ["--idle-exit-s", str(IDLE_EXIT_S), "--metrics-port", "0"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            _watch(proc, target_url, to_offset)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=ADMIN_TIMEOUT_S)
        log.seek(0)
        tail = log.read()[-3000:].decode(errors="replace")
    if proc.returncode != 0:
        raise ReplayError(f"the validator at that revision exited {proc.returncode}:\n{tail}")


def _watch(proc: subprocess.Popen[bytes], target_url: str, to_offset: int) -> None:
    """Follow the other validator's stored position until it exits; it must have reached the bound."""
    last_progress, position = time.monotonic(), 0
    with tqdm(total=to_offset, desc="counterfactual", unit="offset", unit_scale=True) as bar:
        while proc.poll() is None:
            time.sleep(POLL_EVERY_S)
            now = _target_position(target_url)
            if now > position:
                position, last_progress = now, time.monotonic()
                bar.update(position - bar.n)
            elif time.monotonic() - last_progress > STALL_S:
                raise ReplayError(f"the other validator made no progress for {STALL_S:.0f} s at offset {position}")
    final = _target_position(target_url)
    if proc.returncode == 0 and final != to_offset:
        raise ReplayError(f"the other validator stopped at offset {final}, not {to_offset}")


def _target_position(target_url: str) -> int:
    try:
        with psycopg.connect(target_url) as conn:
            row = conn.execute("SELECT coalesce(max(next_offset), 0) FROM consumer_position").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0  # its migrations have not run yet
    return int(row[0]) if row else 0


# --- comparing two ledgers -----------------------------------------------------------------------


@dataclass
class Comparison:
    entries: int = 0
    live_head: tuple[int, bytes] | None = None
    replay_head: tuple[int, bytes] | None = None
    divergence: str | None = None  # the first entry decided differently, or with other content
    divergence_seq: int | None = None
    # From here on the live entries carry another version stamp, so (chained) hashes cannot match;
    # the decisions are still compared.
    restamped_seq: int | None = None
    live_version: str | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None and self.restamped_seq is None


def _stream(url: str, query: str, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor(name="replay_compare") as cur:
        cur.itersize = FETCH_COUNT
        cur.execute(query, params)
        yield from cur


def compare_ledgers(live_url: str, target_url: str, to_offset: int) -> Comparison:
    """Entry by entry (seq, proposal id, hash) for the entries decided from offsets below the bound."""
    query = (
        "SELECT seq, source_offset, proposal_id, validator_version, hash FROM ledger "
        "WHERE source_offset < %s ORDER BY seq"
    )
    out = Comparison()
    live_rows, replay_rows = _stream(live_url, query, (to_offset,)), _stream(target_url, query, (to_offset,))
    for live, replay in _zip_longest(live_rows, replay_rows):
        if live is not None:
            out.live_head = (live[0], bytes(live[4]))
        if replay is not None:
            out.replay_head = (replay[0], bytes(replay[4]))
        out.divergence = _entry_divergence(live, replay, out)
        if out.divergence is not None:
            out.divergence_seq = (live or replay or (None,))[0]
            break
        out.entries += 1
    return out


def _zip_longest(a: Iterator[Any], b: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    while True:
        x, y = next(a, None), next(b, None)
        if x is None and y is None:
            return
        yield x, y


def _entry_divergence(live: tuple[Any, ...] | None, replay: tuple[Any, ...] | None, out: Comparison) -> str | None:
    if live is None or replay is None:
        present, side = (live, "live") if live is not None else (replay, "replay")
        assert present is not None
        return f"seq {present[0]} ({present[2]!r}, offset {present[1]}) exists only in the {side} ledger"
    seq, offset, proposal_id, version, entry_hash = live
    if (seq, offset, proposal_id) != replay[:3]:
        return f"seq {seq}: live has {proposal_id!r} from offset {offset}, replay has {replay[2]!r} from {replay[1]}"
    if bytes(entry_hash) == bytes(replay[4]) or out.restamped_seq is not None:
        return None
    if version != replay[3]:
        out.restamped_seq, out.live_version = seq, version
        return None
    return f"seq {seq} ({proposal_id!r}): same proposal, different content (effects, postings or policy version)"


# --- diffing two laws ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    source_offset: int
    proposal_id: str | None
    agent: str | None
    kind: str | None
    verdict: str  # "ACCEPTED" or the rejection's reason code
    detail: str

    @property
    def accepted(self) -> bool:
        return self.verdict == "ACCEPTED"


@dataclass
class LawDiff:
    offsets: int = 0
    flipped: list[tuple[Outcome, Outcome]] = field(default_factory=list)
    flipped_count: int = 0
    reason_changed: list[tuple[Outcome, Outcome]] = field(default_factory=list)
    reason_changed_count: int = 0
    balances: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # agent, account, resource, live, cf


def outcomes(url: str, to_offset: int) -> Iterator[Outcome]:
    query = (
        "SELECT source_offset, proposal_id, agent, kind, 'ACCEPTED', '' FROM ledger WHERE source_offset < %s "
        "UNION ALL SELECT source_offset, proposal_id, agent, kind, reason_code, detail FROM rejections "
        "WHERE source_offset < %s ORDER BY 1"
    )
    for row in _stream(url, query, (to_offset, to_offset)):
        yield Outcome(*row)


def diff_laws(live_url: str, target_url: str, to_offset: int) -> LawDiff:
    out = LawDiff()
    for live, other in _zip_longest(outcomes(live_url, to_offset), outcomes(target_url, to_offset)):
        if live is None or other is None or live.source_offset != other.source_offset:
            raise ReplayError(f"the two runs did not decide the same offsets (near {live or other})")
        out.offsets += 1
        if live.accepted != other.accepted:
            out.flipped_count += 1
            if len(out.flipped) < REPORTED_MAX:
                out.flipped.append((live, other))
        elif live.verdict != other.verdict:
            out.reason_changed_count += 1
            if len(out.reason_changed) < REPORTED_MAX:
                out.reason_changed.append((live, other))
    out.balances = balance_differences(live_url, target_url, to_offset)
    return out


def balances(url: str, to_offset: int) -> dict[tuple[str, str], int]:
    query = (
        "SELECT account, resource, sum(amount)::bigint FROM postings JOIN ledger USING (seq) "
        "WHERE source_offset < %s GROUP BY account, resource"
    )
    with psycopg.connect(url) as conn:
        return {(a, r): v for a, r, v in conn.execute(query, (to_offset,))}


def balance_differences(live_url: str, target_url: str, to_offset: int) -> list[tuple[str, str, str, int, int]]:
    """(owner, account, resource, live, counterfactual) wherever the two ledgers end with other balances."""
    live, other = balances(live_url, to_offset), balances(target_url, to_offset)
    with psycopg.connect(live_url) as conn:
        owners = {
            a: agent for agent, accounts in conn.execute("SELECT agent, accounts FROM participants") for a in accounts
        }
    keys = sorted(k for k in set(live) | set(other) if live.get(k, 0) != other.get(k, 0))
    return [(owners.get(a, a), a, r, live.get((a, r), 0), other.get((a, r), 0)) for a, r in keys][:REPORTED_MAX]


# --- the command's work --------------------------------------------------------------------------


@dataclass
class ReplayResult:
    run_id: str
    to_offset: int
    seconds: float
    law: str | None  # None: the running code
    comparison: Comparison | None = None
    diff: LawDiff | None = None

    @property
    def ok(self) -> bool:
        return self.diff is not None or (self.comparison is not None and self.comparison.identical)


def replay(
    live: Settings,
    target_url: str,
    secret: bytes,
    version: str,
    to_offset: int | None = None,
    law: str | None = None,
) -> ReplayResult:
    """Replay offsets [0, to_offset) (default: the live position) into ``target_url`` and compare."""
    topic = live.topic("proposals")
    bound = live_position(live.database_url, topic) if to_offset is None else to_offset
    if bound > high_watermark(live.kafka_bootstrap, topic):
        raise ReplayError(f"{topic} holds fewer than {bound} proposals")
    require_empty(target_url)  # also refuses the live database itself
    kind = "replay" if law is None else "counterfactual"
    run_id = new_run_id(kind)
    apply_migrations(live.database_url)
    with psycopg.connect(live.database_url) as conn:
        start_run(conn, run_id, kind)
        try:
            result = _run(live, target_url, secret, version, bound, law, run_id)
        except Exception as exc:
            finish_run(conn, run_id, [], 0, {"entries": 0, "ok": False, "error": str(exc)})
            raise
        anomalies = _anomalies(result)
        finish_run(conn, run_id, anomalies, len(anomalies), summary(result))
        policy = conn.execute("SELECT policy_version FROM grid_status").fetchone()
    if anomalies:
        raise_alerts(live, run_id, anomalies, policy[0] if policy else 0)
    return result


def _run(
    live: Settings, target_url: str, secret: bytes, version: str, bound: int, law: str | None, run_id: str
) -> ReplayResult:
    started = time.perf_counter()
    if law is None:
        apply_migrations(target_url)
        run_same_law(live, target_url, bound, secret, version, run_id)
        result = ReplayResult(
            run_id, bound, 0.0, None, comparison=compare_ledgers(live.database_url, target_url, bound)
        )
    else:
        commit = run_other_law(live, target_url, bound, secret, law, run_id)
        result = ReplayResult(run_id, bound, 0.0, commit, diff=diff_laws(live.database_url, target_url, bound))
    result.seconds = time.perf_counter() - started
    return result


def _anomalies(result: ReplayResult) -> list[Anomaly]:
    c = result.comparison
    if c is None or c.divergence is None:
        return []  # identical, or only stamped by another version: no evidence of a fault
    return [Anomaly(c.divergence_seq, "REPLAY_DIVERGED", f"same-law replay of [0, {result.to_offset}): {c.divergence}")]


def summary(result: ReplayResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": result.run_id,
        "to_offset": result.to_offset,
        "seconds": round(result.seconds, 3),
        "law": result.law,
        "ok": result.ok,
    }
    if result.comparison is not None:
        c = result.comparison
        head = c.replay_head
        out |= {
            "entries": c.entries,
            "entries_per_s": round(c.entries / result.seconds) if result.seconds else None,
            "identical": c.identical,
            "divergence": c.divergence,
            "restamped_seq": c.restamped_seq,
            "live_version": c.live_version,
            "head_seq": head[0] if head else -1,
            "head_hash": head[1].hex() if head else None,
        }
    if result.diff is not None:
        d = result.diff
        out |= {
            "entries": d.offsets,
            "flipped": d.flipped_count,
            "reason_changed": d.reason_changed_count,
            "flips": [_pair(a, b) for a, b in d.flipped],
            "reasons_changed": [_pair(a, b) for a, b in d.reason_changed],
            "balance_differences": [list(b) for b in d.balances],
        }
    return out


def _pair(live: Outcome, other: Outcome) -> list[Any]:
    return [live.source_offset, live.proposal_id, live.verdict, live.detail, other.verdict, other.detail]
