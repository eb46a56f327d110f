"""Reading the dead-letter topic and re-sending its records to the topics they came from.

The consumer dead-letters a record with its original key and value and these headers (see
consumer/batch.py ``dead_letter_headers``): ``reason``, ``error_code``, ``source_topic``,
``source_partition``, ``source_offset``, ``failed_at``. A replayed record keeps key and value and gets
``replayed_from`` (``<dead-letter topic>:<partition>:<offset>``) and ``replayed_code`` headers, so it can
be traced back; re-sending is idempotent downstream because the consumer keys stored events by
``event_id`` (a second copy is a duplicate with no effects) and item updates are full-state upserts.

The reader assigns every partition from the beginning under a throw-away group id and commits
nothing, so listing never moves anyone's offsets. It stops once no record has arrived for ``idle_s``
(the dev broker's watermarks are not reliable enough to stop at the end offsets).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from core.errors import DependencyUnavailable
from core.settings import KafkaSettings
from storage.kafka import flush_or_raise, make_consumer, make_producer
from storage.kafka_publish import DeliveryCounts, publish

log = logging.getLogger(__name__)

REPLAYED_FROM = "replayed_from"
REPLAYED_CODE = "replayed_code"


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int  # in the dead-letter topic
    offset: int
    key: bytes | None
    value: bytes | None
    code: str
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    failed_at: datetime | None

    @property
    def address(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def source(self) -> str:
        if self.source_topic is None:
            return "-"
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"


def _text(headers: dict[str, bytes], name: str) -> str | None:
    raw = headers.get(name)
    return None if raw is None else raw.decode("utf-8", "replace")


def _int(headers: dict[str, bytes], name: str) -> int | None:
    text = _text(headers, name)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def record_from_message(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, str | bytes | None] | Iterable[tuple[str, str | bytes | None]] | None,
    timestamp_ms: int | None = None,
) -> DeadLetterRecord:
    """A dead letter from a Kafka record's parts; missing or garbled headers become None/"unknown"."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    hdrs = {
        name: raw.encode("utf-8") if isinstance(raw, str) else raw for name, raw in pairs if raw is not None
    }
    failed_at = _when(_text(hdrs, "failed_at"))
    if failed_at is None and timestamp_ms is not None and timestamp_ms > 0:
        failed_at = datetime.fromtimestamp(timestamp_ms / 1000.0, tz=UTC)
    return DeadLetterRecord(
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        code=_text(hdrs, "error_code") or "unknown",
        reason=_text(hdrs, "reason") or "",
        source_topic=_text(hdrs, "source_topic"),
        source_partition=_int(hdrs, "source_partition"),
        source_offset=_int(hdrs, "source_offset"),
        failed_at=failed_at,
    )


def select(
    records: Iterable[DeadLetterRecord],
    *,
    code: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[DeadLetterRecord]:
    """Records with this code, failed at or after ``since``, oldest first (by failure time), at most
    ``limit`` of them. A record without a failure time is kept only when no ``since`` is given."""
    picked = [
        r
        for r in records
        if (code is None or r.code == code)
        and (since is None or (r.failed_at is not None and r.failed_at >= since))
    ]
    picked.sort(key=lambda r: (r.failed_at or datetime.min.replace(tzinfo=UTC), r.partition, r.offset))
    return picked if limit is None else picked[:limit]


def read_dead_letters(
    settings: KafkaSettings, *, idle_s: float = 2.0, timeout_s: float = 60.0
) -> Iterator[DeadLetterRecord]:
    """Every record of the dead-letter topic (no offsets committed). Raises ``DependencyUnavailable``
    when the broker cannot be reached."""
    topic = settings.topics.dead_letter
    consumer = make_consumer(settings, group_id=f"streamrec-dead-letter-reader-{uuid.uuid4().hex[:12]}")
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise DependencyUnavailable(f"cannot read topic {topic!r} from Kafka: {exc}") from exc
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            log.info("dead_letter_topic_missing topic=%s", topic)
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(info.partitions)])
        deadline = time.monotonic() + timeout_s
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.25):
                if msg.error() is not None:
                    continue
                idle_since = time.monotonic()
                _, ts = msg.timestamp()
                yield record_from_message(
                    msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), msg.headers(), ts
                )
    finally:
        consumer.close()


def replay_headers(dead_letter_topic: str, record: DeadLetterRecord) -> list[tuple[str, bytes]]:
    return [
        (REPLAYED_FROM, f"{dead_letter_topic}:{record.partition}:{record.offset}".encode()),
        (REPLAYED_CODE, record.code.encode("utf-8")),
    ]


def replayable_topics(settings: KafkaSettings) -> set[str]:
    """Only the consumer's input topics are replay targets, whatever a header claims."""
    return {settings.topics.events, settings.topics.items}


def replay(settings: KafkaSettings, records: Iterable[DeadLetterRecord]) -> dict[str, int]:
    """Re-send each record (key, value) to its source topic; returns the count per topic. Callers pass
    only records whose source is in ``replayable_topics``. Raises ``DependencyUnavailable`` unless
    Kafka acknowledged every record."""
    allowed = replayable_topics(settings)
    producer = make_producer(settings)
    sent: dict[str, int] = {}
    counts = DeliveryCounts()
    for record in records:
        topic = record.source_topic
        if topic is None or topic not in allowed:
            raise ValueError(f"dead letter {record.address} has no replayable source topic")
        message = (record.key, record.value, replay_headers(settings.topics.dead_letter, record))
        # A full local queue is waited out half a second at a time while deliveries drain.
        publish(producer, topic, [message], counts=counts, room_wait_s=0.5)
        sent[topic] = sent.get(topic, 0) + 1
    flush_or_raise(producer)
    if counts.failed:
        raise DependencyUnavailable(
            f"Kafka refused {counts.failed} replayed records, first: {counts.first_error}"
        )
    log.info("dead_letters_replayed counts=%s", sent)
    return sent
