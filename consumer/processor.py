"""One batch through the sinks, in the order that makes a crash at any point safe.

Impression inserts, then the stored events they credit late (``consumer.late_step``), then the
batch's events' attribution read from them (``consumer.impression_step``) → MongoDB event inserts
(idempotent by ``_id``) → item upserts (idempotent, ordered) → dead letters (flushed) → one guarded
Redis step holding every effect plus the new ``applied`` offsets (``consumer.effects``). Only after
all of that returns may the caller commit the Kafka offsets. MongoDB, the system of record, never
waits for Redis: nothing is read from Redis before the inserts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from consumer.batch import (
    UNSTORABLE,
    Classified,
    DeadLetter,
    Outcome,
    RawMessage,
    Settled,
    classify,
    dead_letter_headers,
    event_document,
    next_offsets,
    settle_events,
)
from consumer.effects import RedisEffects
from consumer.impression_step import attribute_events, label, store_impressions
from consumer.isolate import bisect_apply, insert_isolating
from consumer.late_step import LateCounts, attribute_late
from consumer.plans import ADDED_AT, added_ms
from core.errors import DependencyUnavailable
from core.realtime_ops import TopicPartition
from core.settings import Settings
from storage.event_store import EventStore
from storage.impressions import ImpressionStore
from storage.realtime_state import RealtimeState

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkUnavailable(DependencyUnavailable):
    def __init__(self, sink: str, error: BaseException) -> None:
        super().__init__(f"{sink} is unavailable: {error}")
        self.sink = sink
        self.error = error


def as_sink_error(fn: Callable[[], T]) -> T:
    """Run ``fn``; a MongoDB or Redis client error becomes ``SinkUnavailable`` (retried by the runner)."""
    try:
        return fn()
    except PyMongoError as exc:
        raise SinkUnavailable("mongo", exc) from exc
    except RedisError as exc:
        raise SinkUnavailable("redis", exc) from exc


class DeadLetterSink(Protocol):
    def send(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None: ...

    def flush(self) -> None:
        """Block until every sent record is acknowledged (raise if not)."""


@dataclass
class InMemoryDeadLetterSink:
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)
    pending: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)

    def send(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.pending.append((key, value, headers))

    def flush(self) -> None:
        self.records.extend(self.pending)
        self.pending.clear()


@dataclass
class BatchOutcome:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, outcome) → n
    # (surface, model_version, variant) → impressions new in MongoDB.
    impressions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (event_type, model_version, variant, by) → attributed events new in MongoDB.
    attributed: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    # (event_type, model_version, variant, by, change) → stored events credited late (consumer.late_step).
    late: LateCounts = field(default_factory=Counter)
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    redis_ops: int = 0
    # Stored in MongoDB without its Redis effects (consumer.store_ahead): read again, never committed.
    deferred: bool = False


@contextmanager
def _sink(name: str) -> Iterator[None]:
    try:
        yield
    except (PyMongoError, RedisError, DependencyUnavailable) as exc:
        if isinstance(exc, SinkUnavailable):
            raise
        # The Redis step reads MongoDB when it rebuilds an empty Redis: that failure is MongoDB's,
        # and the runner treats the two differently (Redis down: store ahead; MongoDB down: pause).
        raise SinkUnavailable("mongo" if isinstance(exc, PyMongoError) else name, exc) from exc


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        state: RealtimeState,
        dead_letters: DeadLetterSink,
        clock: Callable[[], float] = time.time,
        *,
        impressions: ImpressionStore,
    ) -> None:
        self.settings = settings
        self.store = store
        self.impressions = impressions
        self.state = state
        self.dead_letters = dead_letters
        self.clock = clock
        self.effects = RedisEffects(settings, store, state)
        # Counts of MongoDB writes not yet handed to the caller (see ``_report``).
        self._unreported = BatchOutcome()

    def process(self, messages: list[RawMessage], *, effects: bool = True) -> BatchOutcome:
        """Make the batch's effects durable; raises ``SinkUnavailable`` (safe to retry) on outages.

        ``effects=False`` stores the batch in MongoDB and sends its due dead letters but leaves Redis
        alone, without even reading it (``consumer.store_ahead``: Redis is down); the batch must
        then be read again, not committed."""
        now_s = self.clock()
        now = datetime.fromtimestamp(now_s, tz=UTC)
        result = BatchOutcome(commit=next_offsets(messages))
        if not messages:
            return result
        batch = classify(messages, self.settings.kafka.topics, now)

        with _sink("mongo"):
            # Impressions first: a click in this batch may name one that arrived with it.
            shown = store_impressions(self.impressions, batch, now)
            self._unreported.impressions.update(shown.counts)
            # Every impression of the batch, the redelivered ones too: a crash may have come between
            # their insert and this pass (which is idempotent).
            late = attribute_late(
                self.store,
                self.impressions,
                self.settings.consumer.attribution,
                [imp for _, imp in batch.impressions],
            )
            self._unreported.late.update(late)
            for (etype, version, variant, by, change), n in late.items():
                if change == "new":  # an upgraded or moved event was counted when first credited
                    self._unreported.attributed[(etype, version, variant, by)] += n
            docs = {e.event_id: event_document(m, e, now) for m, e in batch.events}
            credited = attribute_events(
                self.impressions, self.settings.consumer.attribution, [e for _, e in batch.events]
            )
            for eid, attribution in credited.items():
                docs[eid]["attribution"] = attribution
            stored_now = insert_isolating(self.store, list(docs.values()))
            inserted = stored_now.inserted
            dup_ids = [i for i in docs if i not in inserted and i not in stored_now.rejected]
            stored = self.store.stored_events(dup_ids) if dup_ids else {}
            if gone := [i for i in dup_ids if stored.get(i) is None]:
                # Reported as already stored, then not found: erased in between. Insert once more
                # so the record is not dropped as a duplicate of nothing.
                again = insert_isolating(self.store, [docs[i] for i in gone])
                inserted |= again.inserted
                stored_now.rejected.update(again.rejected)
            unstorable_items = self._upsert_items(batch)

        # Read after MongoDB, and None while Redis is down: the inserts above never wait for Redis.
        guard = self.effects.read_guard({m.tp for m in messages}) if effects else None

        settled_by: dict[tuple[tuple[TopicPartition, int], ...], Settled] = {}

        def settle(applied: Mapping[TopicPartition, int]) -> Settled:
            # The Redis step settles again with the guard it applies against: usually the same one.
            key = tuple(sorted(applied.items()))
            if key not in settled_by:
                settled_by[key] = settle_events(batch, docs, inserted, stored, stored_now.rejected, applied)
            return settled_by[key]

        settled = settle(guard.applied if guard else {})
        decisions = settled.decisions
        # Tallied by the enums and named once per batch: str() of two enums per event showed in the
        # consumer's CPU per event.
        tally = Counter((event.event_type, outcome) for _msg, event, outcome, _ in decisions)
        for (etype, outcome), n in tally.items():
            result.counts[(str(etype), str(outcome))] += n
        for _msg, event, outcome, _ in decisions:
            if outcome is Outcome.STORED and (att := docs[event.event_id].get("attribution")):
                key = (str(event.event_type), label(att["model_version"]), label(att["variant"]), att["by"])
                self._unreported.attributed[key] += 1
        if stored_shown := len(shown.inserted):
            result.counts[("impression", Outcome.STORED.value)] += stored_shown
        if repeated := len(batch.impressions) - stored_shown:
            result.counts[("impression", Outcome.DUPLICATE.value)] += repeated
        for _msg, event in settled.duplicates:
            result.counts[(str(event.event_type), Outcome.DUPLICATE.value)] += 1
        batch.dead_letters += settled.dead_letters + unstorable_items + shown.dead_letters

        fresh_dead = self.effects.due_dead_letters(batch.dead_letters, guard)
        if fresh_dead:
            with _sink("kafka"):
                for dl in fresh_dead:
                    self.dead_letters.send(dl.message.key, dl.message.value, dead_letter_headers(dl, now))
                    log.info(
                        "event=dead_lettered topic=%s partition=%d offset=%d code=%s reason=%r",
                        dl.message.topic,
                        dl.message.partition,
                        dl.message.offset,
                        dl.code,
                        dl.reason[:200],
                    )
                self.dead_letters.flush()
            self.effects.dead_lettered(fresh_dead)
        topics = self.settings.kafka.topics
        for dl in batch.dead_letters:
            kind = {topics.items: "item", topics.impressions: "impression"}.get(dl.message.topic, "event")
            result.counts[(kind, Outcome.DEAD_LETTERED.value)] += 1

        for _ in batch.items:
            result.counts[("item", Outcome.STORED.value)] += 1
        if not effects:
            result.deferred = True
            return self._report(result)
        with _sink("redis"):
            # Which records are fresh depends on the applied offsets, which the guard may re-read.
            result.redis_ops = self.effects.apply(
                messages, batch, lambda applied: settle(applied).decisions, guard, now_s
            )
        return self._report(result)

    def _report(self, result: BatchOutcome) -> BatchOutcome:
        """Hand over the impression and attribution counts of every MongoDB step since the last
        report: an attempt that stored them and then failed (Redis, the dead-letter topic) is
        retried, and its records then read as already stored, so they are counted here, once."""
        result.impressions.update(self._unreported.impressions)
        result.attributed.update(self._unreported.attributed)
        result.late.update(self._unreported.late)
        self._unreported = BatchOutcome()
        return result

    def _upsert_items(self, batch: Classified) -> list[DeadLetter]:
        # (also reads back the items' first-seen times into ``batch.added``, for Redis)
        """Store the batch's item updates in order; the ones MongoDB refuses leave ``batch.items``
        (so Redis never mirrors them) and come back as dead letters."""
        if not batch.items:
            return []
        now_ms = int(self.clock() * 1000)
        failed = bisect_apply(
            batch.items,
            lambda part: self.store.upsert_items(
                [
                    # Kept by MongoDB only when this update creates the item (``$setOnInsert``).
                    {"item_id": u.item_id, **u.model_dump(exclude_none=True), ADDED_AT: added_at(m, now_ms)}
                    for m, u in part
                ]
            ),
        )
        if failed:
            bad = {(m.tp, m.offset) for (m, _), _ in failed}
            batch.items = [(m, u) for m, u in batch.items if (m.tp, m.offset) not in bad]
        # Read back, not computed: an item stored before (a redelivery, an older update) keeps the
        # first-seen time it has, and one stored before first-seen times existed has none.
        stored = self.store.get_items(u.item_id for _, u in batch.items)
        batch.added = {iid: ms for iid, doc in stored.items() if (ms := added_ms(doc)) is not None}
        if not failed:
            return []
        for (m, u), reason in failed:
            log.warning("event=unstorable_item item_id=%a offset=%d error=%a", u.item_id, m.offset, reason)
        return [
            DeadLetter(m, UNSTORABLE, f"MongoDB cannot store this item update: {reason}")
            for (m, _), reason in failed
        ]


def added_at(msg: RawMessage, now_ms: int) -> datetime:
    """A catalog update's time: its Kafka timestamp, or the consumer's clock when the record has none
    (or one in the future, which a producer's wrong clock would give)."""
    ms = msg.ts_ms if msg.ts_ms is not None and 0 < msg.ts_ms <= now_ms else now_ms
    return datetime.fromtimestamp(ms / 1000, UTC)
