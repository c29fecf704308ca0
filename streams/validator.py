"""The validator: one ordered consumer of the single-partition proposals topic.

poll a batch -> ``LedgerStep.step`` each message -> hand the batch to the sink, which commits it to
the store (with the consumer position) and relays the records -> once committed, commit the Kafka
group offset (for tooling only). Branching lives in the law; this loop only moves bytes and keeps
the order.

``open_validator`` connects the real adapters: the batches go to a writer process
(``streams.writer``), so batch N is written on one core while batch N+1 is decided on the other.
``Validator`` receives its store, consumer and relay, so a test can run it inline on an in-memory
store that passes the same contract tests as the Postgres one.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NoReturn, Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka_io import consumed_offset
from connectors.ledger_store import LedgerStore, LedgerStoreContract
from core.config import Settings
from core.identities import validator_signer
from core.kafka_access import KafkaAccess
from core.keyring import validator_keyring
from core.outgoing import Outgoing, spike_record
from core.process import settle_heap_for_batches
from core.rows import Batch, CommitRefused, Position, Rejection
from core.step import LedgerStep
from core.version import validator_version
from streams import metrics
from streams.writer import BatchSink, InlineSink, start_writer

logger = logging.getLogger(__name__)

BATCH_COUNT_MAX = 5_000
# Short: a batch is cut when this much time passed, so it bounds the latency added at low load; under
# load consume() returns full batches at once.
BATCH_WAIT_S = 0.005
GROUP_ID_DEFAULT = "grid-validator"


class ValidatorStalled(RuntimeError):
    """``run_until`` saw no new offset decided for longer than its stall limit."""


# The exit status of a validator that halted because the store refused a batch the law accepted.
EXIT_COMMIT_REFUSED = 3


class ValidatorHalted(RuntimeError):
    """The store refused a decided batch (``CommitRefused``): deciding on would skip or repeat it."""

    exit_status = EXIT_COMMIT_REFUSED


class ProposalSource(Protocol):
    """The consumer side the loop needs (confluent-kafka's ``Consumer`` has it)."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True]) -> None: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...
    def close(self) -> None: ...


class RecordSink(Protocol):
    """The relay side the loop needs (``connectors.relay.Relay`` has it)."""

    def publish(self, batch: Batch, extra: list[Outgoing] | None = None) -> None: ...
    def poll(self, timeout_s: float = 0.0) -> dict[str, int]: ...
    def flush(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class _Submitted:
    """A batch handed to the sink, with what the validator does once it is committed."""

    next_offset: int
    accepted: int
    rejected: int
    reasons: Counter[str]  # its rejections by reason
    head: tuple[int, bytes] | None  # (seq, hash) of its last entry
    last_proposal_id: str | None
    produced_ms: list[int] | None  # each message's produce time, when latencies are measured


@dataclass
class LatencySamples:
    """Produce times and produce→commit latencies (ms) of decided messages, side by side. Arrays of
    machine integers, not a list of tuples: a tuple per message is an object the garbage collector
    must scan, and at 10,000/s the samples themselves made its young-generation passes take 34 ms."""

    produced_ms: array[int] = field(default_factory=lambda: array("q"))
    latency_ms: array[int] = field(default_factory=lambda: array("q"))

    def add(self, produced_ms: list[int], committed_at_ms: int) -> None:
        self.produced_ms.extend(produced_ms)
        self.latency_ms.extend(committed_at_ms - produced for produced in produced_ms)


@dataclass
class Validator:
    store: LedgerStoreContract
    consumer: ProposalSource
    relay: RecordSink | None  # None with a ``sink`` that relays itself
    step: LedgerStep
    position: Position  # the committed position: decided and durable
    topic: str
    batch_count_max: int = BATCH_COUNT_MAX
    # When set, every decided message's produce time and produce→commit latency go here (benchmarks only).
    latencies: LatencySamples | None = None
    # Where decided batches are committed; None: here, on ``store``, relayed by ``relay`` (InlineSink).
    sink: BatchSink | None = None
    _spike: tuple[int, int] = (-1, 0)  # (grid tick, rejections decided within it) for the spike alert
    _submitted: deque[_Submitted] = field(default_factory=deque)  # handed to the sink, not yet committed
    # Decided, not yet handed to the sink: offsets below its next_offset are decided (committed, in
    # flight or here).
    _open: Batch = field(default_factory=Batch)
    _produced_ms: list[int] = field(default_factory=list)  # the open batch's, when latencies are measured

    def __post_init__(self) -> None:
        if self.sink is None:
            assert self.relay is not None, "a validator that commits inline relays with its own relay"
            self.sink = InlineSink(self.store, self.relay)
        self._open = Batch(next_offset=self.position.next_offset)

    @property
    def _sink(self) -> BatchSink:
        assert self.sink is not None, "set by __post_init__"
        return self.sink

    # --- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> None:
        """Decide until ``stop`` is set (or nothing arrived for ``idle_exit_s``), then flush and close."""
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                if self.poll_once():
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
            self._wait_for_commits()
            self._sink.finish(self.position.next_offset, self.step.state)
        finally:
            self.close()

    def run_until(self, to_offset: int, stall_s: float, progress: Callable[[int], None] | None = None) -> None:
        """Decide and commit offsets below ``to_offset`` and stop there; messages at or beyond it are not
        decided.

        Raises ``ValidatorStalled`` when no offset was decided or committed for ``stall_s`` seconds.
        """
        last_progress = time.monotonic()
        while self.position.next_offset < to_offset:
            if self.poll_once(to_offset):
                last_progress = time.monotonic()
                if progress is not None:
                    progress(self.position.next_offset)
            elif time.monotonic() - last_progress > stall_s:
                raise ValidatorStalled(f"no progress for {stall_s:.0f} s at offset {self.position.next_offset}")

    def flush_relay(self) -> None:
        """Wait until every batch decided is committed and its records acknowledged by the broker."""
        self._wait_for_commits()
        self._sink.flush_relay()

    def poll_once(self, to_offset: int | None = None) -> int:
        """Consume (at most up to ``to_offset``) and decide into the open batch; take note of the batches
        committed meanwhile, and hand the open batch over when it is due. The count of offsets decided
        plus those newly committed."""
        room = self.batch_count_max - self._open.decided_count
        messages = self.consumer.consume(num_messages=room, timeout=BATCH_WAIT_S)
        if to_offset is not None:
            messages = [m for m in messages if m.error() is not None or consumed_offset(m) < to_offset]
        decided = self.process(messages)
        committed = self._note_commits(wait=False)
        if committed:
            self._submit_if_due()
        return decided + committed

    def process(self, messages: list[Message]) -> int:
        """Decide messages into the open batch, and hand it over if due; how many new offsets were decided.

        1. Skip offsets below the decided position (a redelivery after a crash or a group reset).
        2. Step each remaining message in offset order: an entry (folded into the state) or a rejection.
        3. Hand the open batch to the sink when the sink has nothing in flight or the batch is full
           (``_submit_if_due``). The sink commits it and the new position in one store transaction
           (at once, or in the writer process while the next batch is decided) and relays it.
        4. Once it is committed (``_note_commits``), commit the Kafka group offset (tooling only).
        """
        batch = self._open
        before = batch.decided_count
        for msg in messages:
            if msg.error() is not None:
                self._on_error(msg)
            elif consumed_offset(msg) >= batch.next_offset:
                self._decide(msg, batch)
                if self.latencies is not None:
                    self._produced_ms.append(msg.timestamp()[1])
            else:
                metrics.REDELIVERED.inc()
        decided = batch.decided_count - before
        self._submit_if_due()
        return decided

    def _submit_if_due(self, force: bool = False) -> None:
        """Hand the open batch over if it holds anything and the sink is free, it is full, or ``force``.

        While the writer is busy, the open batch grows instead of queueing behind it: the writer's
        cost per transaction is paid once for all that arrived meanwhile, so a transaction's fixed cost
        cannot build a queue at low load, and a full batch still goes at once under load.
        """
        batch = self._open
        due = force or self._sink.in_flight == 0 or batch.decided_count >= self.batch_count_max
        if not (batch.decided_count and due):
            return
        head = batch.entries[-1] if batch.entries else None
        self._submitted.append(
            _Submitted(
                batch.next_offset,
                len(batch.entries),
                len(batch.rejections),
                Counter(r.reason_code for r in batch.rejections),
                (head.seq, head.hash) if head else None,
                head.proposal_id if head else None,
                self._produced_ms if self.latencies is not None else None,
            )
        )
        self._open, self._produced_ms = Batch(next_offset=batch.next_offset), []
        try:
            self._sink.submit(batch, self.step.state, self._spike_alerts(len(batch.rejections)))
        except CommitRefused as exc:
            self._halt(exc)

    def _decide(self, msg: Message, batch: Batch) -> None:
        offset = consumed_offset(msg)
        result = self.step.step(msg.value(), offset)
        if isinstance(result, Rejection):
            logger.debug(
                "rejected", extra={"offset": offset, "proposal_id": result.proposal_id, "reason": result.reason_code}
            )
            batch.rejections.append(result)
        else:
            batch.entries.append(result)
        batch.next_offset = offset + 1

    def _wait_for_commits(self) -> None:
        self._submit_if_due(force=True)
        while self._submitted:
            self._note_commits(wait=True)

    def _note_commits(self, wait: bool) -> int:
        """Take note of the batches the sink committed (with ``wait``, wait for one); the offsets they hold."""
        try:
            done = self._sink.committed(wait)
        except CommitRefused as exc:
            self._halt(exc)
        before = self.position.next_offset
        for committed in done:
            submitted = self._submitted.popleft()
            assert submitted.next_offset == committed.next_offset, "batches are committed in the order decided"
            metrics.COMMIT_SECONDS.observe(committed.commit_s)
            self._after_commit(submitted, committed.at_ms)
        return self.position.next_offset - before

    def _after_commit(self, batch: _Submitted, committed_at_ms: int) -> None:
        self.position.next_offset = batch.next_offset
        if batch.head is not None:
            self.position.head_seq, self.position.head_hash = batch.head
        metrics.count_decisions(batch.accepted, batch.reasons)
        tp = TopicPartition(self.topic, 0, batch.next_offset)
        self.consumer.commit(offsets=[tp], asynchronous=True)
        metrics.BATCH_SIZE.observe(batch.accepted + batch.rejected)
        metrics.HEAD_SEQ.set(self.position.head_seq)
        _, high = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
        metrics.LAG.set(max(0, high - batch.next_offset))
        if batch.produced_ms is not None and self.latencies is not None:
            # wall clock for measurement only; no decision reads it
            self.latencies.add(batch.produced_ms, committed_at_ms)
        logger.debug(
            "batch committed",
            extra={
                "next_offset": batch.next_offset,
                "accepted": batch.accepted,
                "rejected": batch.rejected,
                "head_seq": self.position.head_seq,
                "last_proposal_id": batch.last_proposal_id,
            },
        )

    def _spike_alerts(self, rejected: int) -> list[Outgoing]:
        """A critical alert the first time a grid tick's rejections pass the policy's spike threshold."""
        state = self.step.state
        tick, before = self._spike if self._spike[0] == state.tick else (state.tick, 0)
        self._spike = (tick, before + rejected)
        threshold = state.policy["rejection_spike_per_tick"]
        if not threshold or not before <= threshold < before + rejected:
            return []
        return [spike_record(tick, before + rejected, threshold, self.step.version, state.policy_version)]

    def _halt(self, exc: CommitRefused) -> NoReturn:
        """Stop for good, loudly: the diagnosis goes to the log, the metrics and the exit status."""
        metrics.HALTED.labels(exc.constraint).set(1)
        logger.critical(
            "validator halted: the store refused a batch the law accepted",
            extra={
                "first_offset": exc.first_offset,
                "next_offset": exc.next_offset,
                "constraint": exc.constraint,
                "detail": exc.detail,
                "entries": [{"offset": o, "agent": a, "nonce": n, "proposal_id": pid} for o, a, n, pid in exc.suspects],
                "exit_status": EXIT_COMMIT_REFUSED,
            },
        )
        raise ValidatorHalted(str(exc)) from exc

    def _on_error(self, msg: Message) -> None:
        err = msg.error()
        assert err is not None, "called only for the messages whose error() is set"
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise RuntimeError(f"fatal consumer error: {err}")
        logger.warning("consumer error", extra={"error": str(err)})

    def close(self) -> None:
        self.consumer.close()
        self._sink.close()


# --- wiring the real adapters ----------------------------------------------------------------------


def open_validator(
    settings: Settings,
    secret: bytes,
    group_id: str = GROUP_ID_DEFAULT,
    version: str = "",
    batch_count_max: int = BATCH_COUNT_MAX,
) -> Validator:
    """Start the writer process (it takes the single-writer lock and catches the relay up), fold the
    ledger meanwhile, and assign the consumer at the stored position."""
    topic = settings.topic("proposals")
    store = LedgerStore(settings.validator_database_url, group_id, topic, validator_signer(settings.home))
    sink = start_writer(settings, group_id, topic, store)  # returns once the writer holds the lock
    try:
        state = store.fold()
        position = store.position()
        sink.await_ready()
        consumer = _consumer(settings.kafka("validator"), group_id, topic, position.next_offset)
    except BaseException:
        sink.close()
        raise
    version = version or validator_version()
    step = LedgerStep(state, validator_keyring(settings, secret), version, position.head_hash)
    settle_heap_for_batches()  # the fold left a large heap of long-lived objects
    logger.info(
        "validator ready",
        extra={
            "validator_version": version,
            "next_offset": position.next_offset,
            "head_seq": position.head_seq,
            "topic": topic,
        },
    )
    return Validator(store, consumer, None, step, position, topic, batch_count_max, sink=sink)


def _consumer(kafka: KafkaAccess, group_id: str, topic: str, next_offset: int) -> Consumer:
    consumer = Consumer(
        kafka.config(
            **{
                "group.id": group_id,
                "enable.auto.commit": False,  # the database holds the position; Kafka's copy is for tooling
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
            }
        )
    )
    # assign(), not subscribe(): the single writer is guaranteed by the Postgres lock, a restart
    # after SIGKILL need not wait for the group coordinator to expire the dead member, and the
    # group has no active members, so operators can reset its offsets with Kafka's own tools.
    consumer.assign([TopicPartition(topic, 0, next_offset)])
    return consumer
