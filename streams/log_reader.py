"""Reading a topic's history from its start for a replay: every offset below the bound, in order,
with none missing (a replay must decide, or copy, each proposal at its own offset)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from core.kafka_access import KafkaAccess
from streams.replay_errors import ReplayError

FETCH_COUNT = 10_000
CONSUME_WAIT_S = 0.5
STALL_S = 60.0  # no new offset read for this long: the topic is shorter than the bound, or stuck


def read_log(kafka: KafkaAccess, topic: str, to_offset: int, group: str) -> Iterator[tuple[int, Message]]:
    """(offset, message) at ``topic``'s offsets [0, to_offset), which must all be there, without gaps (a
    replay preserves offsets)."""
    consumer = Consumer(kafka.config(**{"group.id": group, "enable.auto.commit": False, "enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    expected, last_progress = 0, time.monotonic()
    try:
        while expected < to_offset:
            if time.monotonic() - last_progress > STALL_S:
                raise ReplayError(f"{topic} ended at offset {expected}, before {to_offset}")
            for msg in consumer.consume(num_messages=FETCH_COUNT, timeout=CONSUME_WAIT_S):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ReplayError(f"reading {topic} failed: {err}")
                if msg.offset() != expected:
                    raise ReplayError(f"{topic} has a gap at offset {expected}: cannot preserve offsets")
                last_progress = time.monotonic()
                yield expected, msg
                expected += 1
                if expected == to_offset:
                    return
    finally:
        consumer.close()
