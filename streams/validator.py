"""The validator: one ordered consumer of the single-partition proposals topic.

poll a batch -> decode -> decide -> seal -> commit to Postgres (with the consumer position) ->
commit the Kafka group offset (for tooling only) -> relay the records. Branching lives in the law;
this loop only moves bytes and keeps the order.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka_io import consumed_offset
from gridgov.config import Settings
from gridgov.version import validator_version
from law import Accepted, State, apply, decide
from law.ledger import Entry, seal
from schemas.codec import Decoded, DecodeError, decode
from schemas.keys import keys_for
from schemas.proposal import Genesis
from streams import metrics
from streams.records import Outgoing, spike_record
from streams.relay import Relay, load_positions
from streams.store import Batch, LedgerStore, Position, RejectionRow

logger = logging.getLogger(__name__)

BATCH_COUNT_MAX = 5_000
# Short: a batch is cut when this much time passed, so it bounds the latency added at low load; under
# load consume() returns full batches at once.
BATCH_WAIT_S = 0.005
GROUP_ID_DEFAULT = "grid-validator"
LOCK_WAIT_S = 30.0


@dataclass
class Validator:
    settings: Settings
    secret: bytes
    group_id: str = GROUP_ID_DEFAULT
    version: str = ""
    batch_count_max: int = BATCH_COUNT_MAX
    # When a list, (produce time, produce→commit latency) in ms of every decided message is appended
    # (benchmarks only).
    latencies_ms: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        self.version = self.version or validator_version()
        self.topic = self.settings.topic("proposals")
        self.store = LedgerStore(self.settings.database_url, self.group_id, self.topic)
        self._wait_for_lock()
        self.state: State = self.store.fold()
        self.position: Position = self.store.position()
        self._keys: dict[str, bytes] = {}
        self._keys_agent_count = -1
        self._reasons: Counter[str] = Counter()  # rejections of the batch being decided, by reason
        self._spike = (-1, 0)  # (grid tick, rejections decided within it) for the spike alert
        self.relay = Relay(self.settings.kafka_bootstrap, self.settings.topic, load_positions(self.store.conn))
        self.relay.catch_up(self.store.conn)
        self.consumer = self._consumer()
        # The fold left a large heap of long-lived objects; freezing it keeps the collector's full passes
        # (which would otherwise walk all of it) from adding pauses to batch latency.
        gc.collect()
        gc.freeze()
        logger.info(
            "validator ready",
            extra={
                "validator_version": self.version,
                "next_offset": self.position.next_offset,
                "head_seq": self.position.head_seq,
                "topic": self.topic,
            },
        )

    def _wait_for_lock(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not self.store.lock():
            if time.monotonic() > deadline:
                raise RuntimeError("another validator holds the ledger lock")
            time.sleep(0.5)

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": self.group_id,
                "enable.auto.commit": False,  # the database holds the position; Kafka's copy is for tooling
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
            }
        )

        # assign(), not subscribe(): the single writer is guaranteed by the Postgres lock, a restart
        # after SIGKILL need not wait for the group coordinator to expire the dead member, and the
        # group has no active members, so operators can reset its offsets with Kafka's own tools.
        consumer.assign([TopicPartition(self.topic, 0, self.position.next_offset)])
        return consumer

    # --- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> None:
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                messages = self.consumer.consume(num_messages=self.batch_count_max, timeout=BATCH_WAIT_S)
                decided = self.process(messages)
                self.relay.poll()
                if decided:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
            self._persist_relay_positions()
        finally:
            self.close()

    def process(self, messages: list[Message]) -> int:
        """Decide, commit and relay one batch; return how many new offsets it decided.

        1. Skip offsets below the database position (a redelivery after a crash or a group reset).
        2. Decide each remaining message in offset order, folding accepted entries into the state.
        3. Commit the batch and the new position in one Postgres transaction.
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
        self.store.commit(batch, self.state, self.relay.poll())
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.count_decisions(len(batch.entries), self._reasons)
        self._after_commit(batch)
        if self.latencies_ms is not None:
            now_ms = int(time.time() * 1000)  # wall clock for measurement only; no decision reads it
            self.latencies_ms += [(m.timestamp()[1], now_ms - m.timestamp()[1]) for m in messages if m.error() is None]
        return len(batch.entries) + len(batch.rejections)

    def _decide(self, msg: Message, batch: Batch) -> None:
        offset = consumed_offset(msg)
        decoded = decode(msg.value())
        if isinstance(decoded, DecodeError):
            batch.rejections.append(self._decode_rejection(offset, decoded))
        else:
            decision = decide(self.state, decoded, offset, self._keyring(decoded))
            if isinstance(decision, Accepted):
                batch.entries.append(self._seal(offset, decision, decoded))
                apply(self.state, decision)
            else:
                batch.rejections.append(
                    self._law_rejection(offset, decoded, decision.reason_code, decision.detail, decision.field)
                )
        batch.next_offset = offset + 1

    def _seal(self, offset: int, decision: Accepted, decoded: Decoded) -> Entry:
        entry = seal(
            self.position.head_hash,
            self.state.seq_next,
            offset,
            decision,
            self.version,
            decoded.signed_bytes.decode(),
        )
        self.position.head_hash, self.position.head_seq = entry.hash, entry.seq
        return entry

    def _keyring(self, decoded: Decoded) -> dict[str, bytes]:
        """Fingerprint -> key for the registered agents; rebuilt only when the registry grows.

        Before genesis nobody is registered, so the keys are those of the agents the genesis names;
        the law still checks that its signer is an operator it registers.
        """
        body = decoded.proposal.body
        if not self.state.agents and isinstance(body, Genesis):
            return keys_for(self.secret, [p.agent for p in body.participants])
        if len(self.state.agents) != self._keys_agent_count:
            self._keys = keys_for(self.secret, self.state.agents)
            self._keys_agent_count = len(self.state.agents)
        return self._keys

    def _decode_rejection(self, offset: int, e: DecodeError) -> RejectionRow:
        self._reasons[e.reason_code] += 1
        logger.debug("rejected", extra={"offset": offset, "proposal_id": e.proposal_id, "reason": e.reason_code})
        return RejectionRow(
            offset,
            e.proposal_id,
            e.agent,
            None,
            e.reason_code,
            e.field,
            e.detail,
            None,
            self.version,
            self.state.policy_version,
            None,
        )

    def _law_rejection(self, offset: int, d: Decoded, code: str, detail: str, field: str | None) -> RejectionRow:
        self._reasons[code] += 1
        p = d.proposal
        logger.debug("rejected", extra={"offset": offset, "proposal_id": p.id, "reason": code})
        provenance = p.provenance.model_dump_json(exclude_none=True) if p.provenance else None
        return RejectionRow(
            offset,
            p.id,
            p.agent,
            p.body.kind,
            code,
            field,
            detail,
            p.tick,
            self.version,
            self.state.policy_version,
            provenance,
        )

    def _after_commit(self, batch: Batch) -> None:
        self.position.next_offset = batch.next_offset
        tp = TopicPartition(self.topic, 0, batch.next_offset)
        self.consumer.commit(offsets=[tp], asynchronous=True)
        self.relay.publish(batch, self._spike_alerts(len(batch.rejections)))
        metrics.BATCH_SIZE.observe(len(batch.entries) + len(batch.rejections))
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
        tick, before = self._spike if self._spike[0] == self.state.tick else (self.state.tick, 0)
        self._spike = (tick, before + rejected)
        threshold = self.state.policy["rejection_spike_per_tick"]
        if not threshold or not before <= threshold < before + rejected:
            return []
        return [spike_record(tick, before + rejected, threshold, self.version, self.state.policy_version)]

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
        self.store.commit(Batch(next_offset=self.position.next_offset), self.state, positions)

    def close(self) -> None:
        self.consumer.close()
        self.store.close()
