"""Producing proposals: one configured confluent-kafka producer and a delivery-checked send."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

FLUSH_TIMEOUT_S = 30.0


class DeliveryError(RuntimeError):
    pass


def proposal_producer(bootstrap: str, linger_ms: int = 2) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "message.max.bytes": 2_097_152,  # hostile tests send 1 MB proposals; the topic allows 2 MiB
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def send_all(producer: Producer, topic: str, values: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) pairs in order and wait until the broker acknowledged every one."""
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(FLUSH_TIMEOUT_S) > 0:
        raise DeliveryError(f"messages still undelivered after {FLUSH_TIMEOUT_S} s")
    if failures:
        raise DeliveryError(f"{len(failures)} messages failed: {failures[0]}")
