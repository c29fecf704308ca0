"""Producing proposals: one configured confluent-kafka producer, a bounded produce that waits out a full
local queue, a delivery-checked send, and the two aimed at the grid's proposals topic; and the offset of
a consumed record, which the stubs leave optional."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, Message, Producer

from core.config import Settings
from core.kafka_access import KafkaAccess
from core.process import poll_until

FLUSH_TIMEOUT_S = 30.0
# The local queue drains as the broker acknowledges; one that stays full this long has no broker behind it.
QUEUE_FULL_WAIT_S_MAX = 60.0
QUEUE_FULL_POLL_S = 0.1

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class DeliveryError(RuntimeError):
    pass


def consumed_offset(msg: Message) -> int:
    """The offset of a record ``consume`` returned (``msg.error()`` is None).

    The stubs type ``offset()`` as optional because a message that is an error event, or one produced
    but not yet delivered, has none; a consumed record always comes from its place in the log.
    """
    offset = msg.offset()
    assert offset is not None, "a consumed message without error always has an offset"
    return offset


def proposal_producer(kafka: KafkaAccess, linger_ms: int = 2) -> Producer:
    return Producer(
        kafka.config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "message.max.bytes": 2_097_152,  # hostile tests send 1 MB proposals; the topic allows 2 MiB
                "queue.buffering.max.messages": 1_000_000,
            }
        )
    )


def produce_with_backpressure(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    on_delivery: DeliveryCallback | None = None,
    timestamp_ms: int = 0,
    wait_s_max: float = QUEUE_FULL_WAIT_S_MAX,
) -> None:
    """Produce one record; while the producer's local queue is full, serve delivery reports (which makes
    room) and retry, for at most ``wait_s_max``. ``timestamp_ms`` 0 is the producer's clock."""
    try:  # the common case, without the retry loop's closure and clock (the relay calls this per record)
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery, timestamp=timestamp_ms)
        return
    except BufferError:
        pass

    def queued() -> bool:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery, timestamp=timestamp_ms)
        except BufferError:
            producer.poll(QUEUE_FULL_POLL_S)
            return False
        return True

    # no sleep between tries: the poll above already waits for a delivery report
    poll_until(queued, wait_s_max, f"room in the producer's queue for {topic}", interval_s=0)


def send_all(producer: Producer, topic: str, values: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) pairs in order and wait until the broker acknowledged every one."""
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in values:
        produce_with_backpressure(producer, topic, value, key, on_delivery=delivered)
        producer.poll(0)
    if producer.flush(FLUSH_TIMEOUT_S) > 0:
        raise DeliveryError(f"messages still undelivered after {FLUSH_TIMEOUT_S} s")
    if failures:
        raise DeliveryError(f"{len(failures)} messages failed: {failures[0]}")


def send_proposals(settings: Settings, raws: Iterable[bytes], linger_ms: int = 2) -> None:
    """Publish encoded proposals, unkeyed and in order, on the grid's proposals topic; return once
    the broker acknowledged every one."""
    producer = proposal_producer(settings.kafka("producer"), linger_ms)
    send_all(producer, settings.topic("proposals"), [(None, raw) for raw in raws])
