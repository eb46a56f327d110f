"""Pure batch logic: classify raw Kafka records, build stored documents, decide whose effects apply.

Duplicate rules (exactly-once Redis effects under at-least-once delivery):

* Within one batch the first occurrence of an ``event_id`` wins; a later one with the same content is
  a duplicate, one with different content is dead-lettered as ``conflicting_duplicate``.
* An id MongoDB already holds is a *redelivery* when the stored ``src`` is this very record
  (topic, partition, offset) and the content matches: its effects are applied iff its offset is
  above the partition's ``applied`` offset in Redis. The same content from another record means the
  same event was sent twice: skipped (counted). Different content (``CONTENT_FIELDS``) means the id
  was reused: dead-lettered as ``conflicting_duplicate``; the stored version is kept.
* An event MongoDB cannot store (the driver refuses it) is dead-lettered as ``unstorable``, and so
  are later records in the batch with its id and content.
* Effects of any record (stored, redelivered, item update, dead letter) at or below ``applied`` were
  already made before a crash, so they are not made again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from core.events import InteractionEvent, ItemUpdate, ParseError, parse_interaction, parse_item_update
from core.impressions import Impression, parse_impression
from core.realtime_ops import TopicPartition
from core.settings import KafkaTopics


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # The record's Kafka timestamp (epoch ms), None when the broker gave none: a new catalog item's
    # first-seen time (core.keys ``added``).
    ts_ms: int | None = None
    # Built once with the record: a batch asks every record for it several times (offsets, guard,
    # settling), and a cached_property's first read takes a lock.
    tp: TopicPartition = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tp", (self.topic, self.partition))

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
    # What serving showed (core.impressions): stored, never turned into Redis effects.
    impressions: list[tuple[RawMessage, Impression]] = field(default_factory=list)
    # item -> first-seen epoch ms as stored in MongoDB, for the items of ``items`` that have one.
    added: dict[str, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _reject(msg: RawMessage, error: ParseError) -> DeadLetter:
    return DeadLetter(msg, error.code, error.reason)


def classify(messages: Iterable[RawMessage], topics: KafkaTopics, now: datetime) -> Classified:
    out = Classified()
    seen_ids: set[str] = set()
    consumed = (topics.events, topics.items, topics.impressions)
    for msg in messages:
        if msg.topic not in consumed:
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
        elif msg.topic == topics.impressions:
            shown = parse_impression(msg.value)
            if isinstance(shown, ParseError):
                out.dead_letters.append(_reject(msg, shown))
            else:
                out.impressions.append((msg, shown))
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
        "event_type": str(event.event_type),
        "ts": event.timestamp,
        "ts_ms": event.ts_ms,
        "value": event.value,
        "session_id": event.session_id,
        "properties": event.properties,
        "recommendation_id": event.recommendation_id,
        "position": event.position,
        "src": msg.src,
        "ingested_at": ingested_at,
    }


# The stored fields that make an event what it is; two records with one event id and different
# values here are a conflict, not a duplicate (``ingested_at`` and ``src`` say nothing about it).
# ``attribution`` is not one either: it is what the consumer concluded from the impressions it had
# stored at the time, so a redelivery that concludes otherwise (its impression arrived meanwhile) is
# still a redelivery; the stored document is kept as it is, and only an impression stored later fills
# in or improves its attribution (consumer.late_step).
CONTENT_FIELDS = (
    "user_id",
    "item_id",
    "event_type",
    "ts_ms",
    "value",
    "session_id",
    "properties",
    "recommendation_id",
    "position",
)


def content_key(doc: Mapping[str, Any]) -> bytes:
    """A canonical form of what the event says (types kept: 1 and 1.0 and true stay distinct)."""
    fields = {f: doc.get(f) for f in CONTENT_FIELDS}
    if fields["ts_ms"] is None and isinstance(doc.get("ts"), datetime):
        fields["ts_ms"] = int(doc["ts"].timestamp() * 1000)
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=repr)


CONFLICT = "conflicting_duplicate"
UNSTORABLE = "unstorable"


# (record, event, outcome, apply its effects now)
Decision = tuple[RawMessage, InteractionEvent, Outcome, bool]


@dataclass
class Settled:
    """What became of every interaction record of a batch after the MongoDB insert."""

    decisions: list[Decision] = field(default_factory=list)
    duplicates: list[tuple[RawMessage, InteractionEvent]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def settle_events(
    batch: Classified,
    docs: Mapping[str, Mapping[str, Any]],
    inserted: set[str],
    stored: Mapping[str, Mapping[str, Any] | None],
    rejected: Mapping[str, str],
    applied: Mapping[TopicPartition, int],
) -> Settled:
    """Outcome per record. ``docs``: the documents built for the batch's first occurrences;
    ``stored``: what MongoDB holds for ids not inserted now; ``rejected``: id → driver message."""
    out = Settled()
    failed: dict[str, DeadLetter] = {}  # id → how its first occurrence was dead-lettered
    for msg, event in batch.events:
        eid = event.event_id
        if eid in rejected:
            failed[eid] = DeadLetter(msg, UNSTORABLE, f"MongoDB cannot store this event: {rejected[eid]}")
            out.dead_letters.append(failed[eid])
            continue
        if eid in inserted:
            out.decisions.append((msg, event, Outcome.STORED, is_fresh(msg, applied)))
            continue
        current = stored.get(eid)
        if current is not None and content_key(current) != content_key(docs[eid]):
            src = current.get("src") or {}
            failed[eid] = DeadLetter(
                msg,
                CONFLICT,
                f"event_id {eid!a} is already stored with different content "
                f"(first read from {src.get('topic')!a}[{src.get('partition')}]@{src.get('offset')}); "
                "the stored version is kept",
            )
            out.dead_letters.append(failed[eid])
            continue
        src = (current or {}).get("src") or {}
        if (src.get("topic"), src.get("partition"), src.get("offset")) == (
            msg.topic,
            msg.partition,
            msg.offset,
        ):
            out.decisions.append((msg, event, Outcome.REDELIVERED, is_fresh(msg, applied)))
        else:
            out.decisions.append((msg, event, Outcome.DUPLICATE, False))
    for msg, event in batch.batch_duplicates:
        eid = event.event_id
        if content_key(event_document(msg, event, _EPOCH)) != content_key(docs[eid]):
            first = docs[eid]["src"]
            reason = (
                f"event_id {eid!a} appears earlier in the batch with different content "
                f"({first['topic']!a}[{first['partition']}]@{first['offset']}); the first one wins"
            )
            out.dead_letters.append(DeadLetter(msg, CONFLICT, reason))
        elif eid in failed:
            out.dead_letters.append(DeadLetter(msg, failed[eid].code, failed[eid].reason))
        else:
            out.duplicates.append((msg, event))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_fresh(msg: RawMessage, applied: Mapping[TopicPartition, int]) -> bool:
    """True when the record's effects have not been applied yet."""
    return msg.offset > applied.get(msg.tp, -1)


def next_offsets(messages: Iterable[RawMessage]) -> dict[TopicPartition, int]:
    """Offsets to commit: last + 1 per partition."""
    out: dict[TopicPartition, int] = {}
    get = out.get  # runs twice per batch over every record: no max() call, one lookup per record
    for msg in messages:
        nxt = msg.offset + 1
        if nxt > get(msg.tp, 0):
            out[msg.tp] = nxt
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
        # backslashreplace: a reason quoting broken input must still encode (never crash here).
        ("reason", dl.reason.encode("utf-8", errors="backslashreplace")),
        ("error_code", dl.code.encode("utf-8")),
        ("source_topic", msg.topic.encode("utf-8", errors="backslashreplace")),
        ("source_partition", str(msg.partition).encode()),
        ("source_offset", str(msg.offset).encode()),
        ("failed_at", failed_at.isoformat().encode()),
    ]
