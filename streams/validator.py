"""The validator: one ordered consumer of the single-partition proposals topic.

poll a batch -> ``LedgerStep.step`` each message -> commit to the store (with the consumer position)
-> commit the Kafka group offset (for tooling only) -> relay the records. Branching lives in the law;
this loop only moves bytes and keeps the order.

``Validator`` receives its store, consumer and relay (``open_validator`` connects the real ones), so
a test can run it on an in-memory store that passes the same contract tests as the Postgres one.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NoReturn, Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka_io import consumed_offset
from connectors.ledger_store import LedgerStore, LedgerStoreContract
from connectors.relay import Relay
from core.config import Settings
from core.identities import validator_signer
from core.kafka_access import KafkaAccess
from core.keyring import validator_keyring
from core.outgoing import Outgoing, spike_record
from core.process import WaitTimeoutError, poll_until
from core.rows import Batch, CommitRefused, Position, Rejection
from core.step import LedgerStep
from core.version import validator_version
from streams import metrics

logger = logging.getLogger(__name__)

BATCH_COUNT_MAX = 5_000
# Short: a batch is cut when this much time passed, so it bounds the latency added at low load; under
# load consume() returns full batches at once.
BATCH_WAIT_S = 0.005
GROUP_ID_DEFAULT = "grid-validator"
LOCK_WAIT_S = 30.0
LOCK_RETRY_S = 0.5


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


@dataclass
class Validator:
    store: LedgerStoreContract
    consumer: ProposalSource
    relay: RecordSink
    step: LedgerStep
    position: Position
    topic: str
    batch_count_max: int = BATCH_COUNT_MAX
    # When a list, (produce time, produce→commit latency) in ms of every decided message is appended
    # (benchmarks only).
    latencies_ms: list[tuple[int, int]] | None = None
    _reasons: Counter[str] = field(default_factory=Counter)  # rejections of the batch being decided
    _spike: tuple[int, int] = (-1, 0)  # (grid tick, rejections decided within it) for the spike alert

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
            self._persist_relay_positions()
        finally:
            self.close()

    def run_until(self, to_offset: int, stall_s: float, progress: Callable[[int], None] | None = None) -> None:
        """Decide offsets below ``to_offset`` and stop there; messages at or beyond it are not decided.

        Raises ``ValidatorStalled`` when no offset was decided for ``stall_s`` seconds.
        """
        last_progress = time.monotonic()
        while self.position.next_offset < to_offset:
            if self.poll_once(to_offset):
                last_progress = time.monotonic()
                if progress is not None:
                    progress(self.position.next_offset)
            elif time.monotonic() - last_progress > stall_s:
                raise ValidatorStalled(f"no progress for {stall_s:.0f} s at offset {self.position.next_offset}")

    def poll_once(self, to_offset: int | None = None) -> int:
        """Consume one batch (at most up to ``to_offset``), decide and commit it; the count decided."""
        messages = self.consumer.consume(num_messages=self.batch_count_max, timeout=BATCH_WAIT_S)
        if to_offset is not None:
            messages = [m for m in messages if m.error() is not None or consumed_offset(m) < to_offset]
        decided = self.process(messages)
        self.relay.poll()
        return decided

    def process(self, messages: list[Message]) -> int:
        """Decide, commit and relay one batch; return how many new offsets it decided.

        1. Skip offsets below the stored position (a redelivery after a crash or a group reset).
        2. Step each remaining message in offset order: an entry (folded into the state) or a rejection.
        3. Commit the batch and the new position in one store transaction.
        4. Commit the Kafka group offset (tooling only) and hand the records to the relay.
        """
        batch = Batch(next_offset=self.position.next_offset)
        self._reasons = Counter()
        for msg in messages:
            if msg.error() is not None:
                self._on_error(msg)
            elif consumed_offset(msg) >= batch.next_offset:
                self._decide(msg, batch)
            else:
                metrics.REDELIVERED.inc()
        if batch.next_offset == self.position.next_offset:
            return 0
        started = time.perf_counter()
        try:
            self.store.commit(batch, self.step.state, self.relay.poll())
        except CommitRefused as exc:
            self._halt(exc)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.count_decisions(len(batch.entries), self._reasons)
        self._after_commit(batch)
        if self.latencies_ms is not None:
            now_ms = int(time.time() * 1000)  # wall clock for measurement only; no decision reads it
            self.latencies_ms += [(m.timestamp()[1], now_ms - m.timestamp()[1]) for m in messages if m.error() is None]
        return batch.decided_count

    def _decide(self, msg: Message, batch: Batch) -> None:
        offset = consumed_offset(msg)
        result = self.step.step(msg.value(), offset)
        if isinstance(result, Rejection):
            self._reasons[result.reason_code] += 1
            logger.debug(
                "rejected", extra={"offset": offset, "proposal_id": result.proposal_id, "reason": result.reason_code}
            )
            batch.rejections.append(result)
        else:
            batch.entries.append(result)
            self.position.head_seq, self.position.head_hash = result.seq, result.hash
        batch.next_offset = offset + 1

    def _after_commit(self, batch: Batch) -> None:
        self.position.next_offset = batch.next_offset
        tp = TopicPartition(self.topic, 0, batch.next_offset)
        self.consumer.commit(offsets=[tp], asynchronous=True)
        self.relay.publish(batch, self._spike_alerts(len(batch.rejections)))
        metrics.BATCH_SIZE.observe(batch.decided_count)
        metrics.HEAD_SEQ.set(self.position.head_seq)
        _, high = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
        metrics.LAG.set(max(0, high - batch.next_offset))
        logger.debug(
            "batch committed",
            extra={
                "next_offset": batch.next_offset,
                "accepted": len(batch.entries),
                "rejected": len(batch.rejections),
                "head_seq": self.position.head_seq,
                "last_proposal_id": batch.entries[-1].proposal_id if batch.entries else None,
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

    def _persist_relay_positions(self) -> None:
        positions = self.relay.flush()
        self.store.commit(Batch(next_offset=self.position.next_offset), self.step.state, positions)

    def close(self) -> None:
        self.consumer.close()
        self.store.close()


# --- wiring the real adapters ----------------------------------------------------------------------


def open_validator(
    settings: Settings,
    secret: bytes,
    group_id: str = GROUP_ID_DEFAULT,
    version: str = "",
    batch_count_max: int = BATCH_COUNT_MAX,
) -> Validator:
    """Connect the Postgres store, take the single-writer lock, fold the ledger, catch the relay up
    and assign the consumer at the stored position."""
    topic = settings.topic("proposals")
    store = LedgerStore(settings.validator_database_url, group_id, topic, validator_signer(settings.home))
    _wait_for_lock(store)
    state = store.fold()
    position = store.position()
    relay = Relay(settings.kafka("validator"), settings.topic, store.relay_positions())
    relay.catch_up(store.unrelayed(relay.confirmed))
    consumer = _consumer(settings.kafka("validator"), group_id, topic, position.next_offset)
    version = version or validator_version()
    step = LedgerStep(state, validator_keyring(settings, secret), version, position.head_hash)
    # The fold left a large heap of long-lived objects; freezing it keeps the collector's full passes
    # (which would otherwise walk all of it) from adding pauses to batch latency.
    gc.collect()
    gc.freeze()
    logger.info(
        "validator ready",
        extra={
            "validator_version": version,
            "next_offset": position.next_offset,
            "head_seq": position.head_seq,
            "topic": topic,
        },
    )
    return Validator(store, consumer, relay, step, position, topic, batch_count_max)


def _wait_for_lock(store: LedgerStore) -> None:
    try:
        poll_until(store.lock, LOCK_WAIT_S, "the ledger lock, held by another validator", interval_s=LOCK_RETRY_S)
    except WaitTimeoutError:
        store.close()
        raise


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
