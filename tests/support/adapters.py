"""In-memory stand-ins for the validator's consumer and relay, so its loop runs with no Kafka."""

from __future__ import annotations

from confluent_kafka import Message, TopicPartition

from core.outgoing import Outgoing
from core.rows import Batch


class ListConsumer:
    """Hands out prepared messages in batches, like ``Consumer.consume``: at most ``arrived_count`` per
    call when set, like a consumer that has only that many when its wait ends."""

    def __init__(self, topic: str, raws: list[bytes], arrived_count: int | None = None) -> None:
        self.messages = [
            Message(topic=topic, partition=0, offset=i, value=r, timestamp=(1, 0)) for i, r in enumerate(raws)
        ]
        self.committed: list[int] = []
        self.arrived_count = arrived_count

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        num_messages = min(num_messages, self.arrived_count or num_messages)
        taken, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return taken

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.committed.append(offsets[0].offset)

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = 0, cached: bool = False
    ) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        pass


class ListRelay:
    def __init__(self) -> None:
        self.published: list[Batch] = []

    def publish(self, batch: Batch, extra: list[Outgoing] | None = None) -> None:
        self.published.append(batch)

    def poll(self, timeout_s: float = 0.0) -> dict[str, int]:
        return {}

    def flush(self) -> dict[str, int]:
        return {}
