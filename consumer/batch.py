"""Pure batch logic: classify raw Kafka records, build stored documents, decide whose effects apply.

Duplicate rules (exactly-once Redis effects under at-least-once delivery):

* Within one batch the first occurrence of an ``event_id`` wins; later ones are duplicates.
* An id MongoDB already holds is a *redelivery* when the stored ``src`` is this very record
  (topic, partition, offset): its effects are applied iff its offset is above the partition's
  ``applied`` offset in Redis. Any other stored ``src`` means the same event was sent twice: skipped.
* Effects of any record (stored, redelivered, item update, dead letter) at or below ``applied`` were
  already made before a crash, so they are not made again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.events import InteractionEvent, ItemUpdate, ParseError, parse_interaction, parse_item_update
from core.settings import KafkaTopics

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)

    @property
    def src(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class DeadLetter:
    message: RawMessage
    code: str
    reason: str


class Outcome(StrEnum):
    STORED = "stored"  # new in MongoDB, effects applied
    REDELIVERED = "redelivered"  # same record seen again; effects applied only if not yet
    DUPLICATE = "duplicate"  # same event id from another record (or earlier in the batch)
    DEAD_LETTERED = "dead_lettered"


@dataclass
class Classified:
    events: list[tuple[RawMessage, InteractionEvent]] = field(default_factory=list)
    batch_duplicates: list[tuple[RawMessage, InteractionEvent]] = field(default_factory=list)
    items: list[tuple[RawMessage, ItemUpdate]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _reject(msg: RawMessage, error: ParseError) -> DeadLetter:
    return DeadLetter(msg, error.code, error.reason)


def classify(messages: Iterable[RawMessage], topics: KafkaTopics, now: datetime) -> Classified:
    out = Classified()
    seen_ids: set[str] = set()
    for msg in messages:
        if msg.topic not in (topics.events, topics.items):
            out.dead_letters.append(DeadLetter(msg, "unknown_topic", f"topic {msg.topic!r} is not consumed"))
            continue
        if not msg.key:
            out.dead_letters.append(DeadLetter(msg, "missing_key", "record has no key (or an empty key)"))
            continue
        if msg.value is None:
            out.dead_letters.append(DeadLetter(msg, "missing_value", "record has no value"))
            continue
        if msg.topic == topics.events:
            parsed = parse_interaction(msg.value, now=now)
            if isinstance(parsed, ParseError):
                out.dead_letters.append(_reject(msg, parsed))
            elif parsed.event_id in seen_ids:
                out.batch_duplicates.append((msg, parsed))
            else:
                seen_ids.add(parsed.event_id)
                out.events.append((msg, parsed))
        else:
            item = parse_item_update(msg.value)
            if isinstance(item, ParseError):
                out.dead_letters.append(_reject(msg, item))
            else:
                out.items.append((msg, item))
    return out


def event_document(msg: RawMessage, event: InteractionEvent, ingested_at: datetime) -> dict[str, Any]:
    return {
        "_id": event.event_id,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "event_type": event.event_type.value,
        "ts": event.timestamp,
        "ts_ms": event.ts_ms,
        "value": event.value,
        "session_id": event.session_id,
        "properties": event.properties,
        "src": msg.src,
        "ingested_at": ingested_at,
    }


def is_fresh(msg: RawMessage, applied: Mapping[TopicPartition, int]) -> bool:
    """True when the record's effects have not been applied yet."""
    return msg.offset > applied.get(msg.tp, -1)


def decide_events(
    events: list[tuple[RawMessage, InteractionEvent]],
    inserted: set[str],
    stored_src: Mapping[str, Mapping[str, Any] | None],
    applied: Mapping[TopicPartition, int],
) -> list[tuple[RawMessage, InteractionEvent, Outcome, bool]]:
    """(record, event, outcome, apply_effects) for each first occurrence in the batch."""
    out: list[tuple[RawMessage, InteractionEvent, Outcome, bool]] = []
    for msg, event in events:
        if event.event_id in inserted:
            out.append((msg, event, Outcome.STORED, is_fresh(msg, applied)))
            continue
        src = stored_src.get(event.event_id)
        same = src is not None and (src.get("topic"), src.get("partition"), src.get("offset")) == (
            msg.topic,
            msg.partition,
            msg.offset,
        )
        if same:
            out.append((msg, event, Outcome.REDELIVERED, is_fresh(msg, applied)))
        else:
            out.append((msg, event, Outcome.DUPLICATE, False))
    return out


def next_offsets(messages: Iterable[RawMessage]) -> dict[TopicPartition, int]:
    """Offsets to commit: last + 1 per partition."""
    out: dict[TopicPartition, int] = {}
    for msg in messages:
        out[msg.tp] = max(out.get(msg.tp, 0), msg.offset + 1)
    return out


def advanced_applied(
    messages: Iterable[RawMessage], applied: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """New ``applied`` values for partitions whose highest offset in the batch is above the stored one."""
    out: dict[TopicPartition, int] = {}
    for tp, nxt in next_offsets(messages).items():
        if nxt - 1 > applied.get(tp, -1):
            out[tp] = nxt - 1
    return out


def dead_letter_headers(dl: DeadLetter, failed_at: datetime) -> list[tuple[str, bytes]]:
    msg = dl.message
    return [
        ("reason", dl.reason.encode("utf-8")),
        ("error_code", dl.code.encode("utf-8")),
        ("source_topic", msg.topic.encode("utf-8")),
        ("source_partition", str(msg.partition).encode()),
        ("source_offset", str(msg.offset).encode()),
        ("failed_at", failed_at.isoformat().encode()),
    ]
