"""Kafka records as the batch sees them, and errors as the logs show them."""

from __future__ import annotations

import confluent_kafka
from confluent_kafka import Message, TopicPartition

from consumer.batch import RawMessage


def to_raw(msg: Message) -> RawMessage:
    kind, ts = msg.timestamp()
    stamp = int(ts) if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE and ts > 0 else None
    topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
    return RawMessage(topic, partition, offset, msg.key(), msg.value(), stamp)


def short_error(error: BaseException | None) -> str:
    """First line of an error, without pymongo's topology dump."""
    text = str(error).splitlines()[0] if error is not None and str(error) else type(error).__name__
    return text.split(", Timeout:")[0].split(" (configured timeouts")[0][:200]


def fmt_partitions(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
