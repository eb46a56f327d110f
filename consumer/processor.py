"""One batch through the sinks, in the order that makes a crash at any point safe.

MongoDB inserts (idempotent by ``_id``) → item upserts (idempotent, ordered) → dead letters
(flushed) → one guarded Redis step holding every effect plus the new ``applied`` offsets
(``consumer.effects``). Only after all of that returns may the caller commit the Kafka offsets.
MongoDB, the system of record, never waits for Redis: nothing is read from Redis before the inserts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from consumer.batch import (
    Outcome,
    RawMessage,
    TopicPartition,
    classify,
    dead_letter_headers,
    decide_events,
    event_document,
    next_offsets,
)
from consumer.effects import RedisEffects
from core.errors import DependencyUnavailable
from core.settings import Settings
from storage.event_store import EventStore
from storage.realtime_state import RealtimeState

log = logging.getLogger(__name__)


class SinkUnavailable(DependencyUnavailable):
    def __init__(self, sink: str, error: BaseException) -> None:
        super().__init__(f"{sink} is unavailable: {error}")
        self.sink = sink
        self.error = error


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
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    redis_ops: int = 0


@contextmanager
def _sink(name: str) -> Iterator[None]:
    try:
        yield
    except (PyMongoError, RedisError, DependencyUnavailable) as exc:
        if isinstance(exc, SinkUnavailable):
            raise
        raise SinkUnavailable(name, exc) from exc


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        state: RealtimeState,
        dead_letters: DeadLetterSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.dead_letters = dead_letters
        self.clock = clock
        self.effects = RedisEffects(settings, store, state)

    def process(self, messages: list[RawMessage]) -> BatchOutcome:
        """Make the batch's effects durable; raises ``SinkUnavailable`` (safe to retry) on outages."""
        now_s = self.clock()
        now = datetime.fromtimestamp(now_s, tz=UTC)
        result = BatchOutcome(commit=next_offsets(messages))
        if not messages:
            return result
        batch = classify(messages, self.settings.kafka.topics, now)

        with _sink("mongo"):
            docs = [event_document(m, e, now) for m, e in batch.events]
            inserted = set(self.store.insert_events(docs).inserted)
            dup_ids = [e.event_id for _, e in batch.events if e.event_id not in inserted]
            stored_src = self.store.sources(dup_ids) if dup_ids else {}
            if batch.items:
                self.store.upsert_items(
                    [{"item_id": u.item_id, **u.model_dump(exclude_none=True)} for _, u in batch.items]
                )

        # Read after MongoDB, and None while Redis is down: the inserts above never wait for Redis.
        guard = self.effects.read_guard({m.tp for m in messages})

        decisions = decide_events(batch.events, inserted, stored_src, guard.applied if guard else {})
        for _msg, event, outcome, _ in decisions:
            result.counts[(event.event_type.value, outcome.value)] += 1
        for _msg, event in batch.batch_duplicates:
            result.counts[(event.event_type.value, Outcome.DUPLICATE.value)] += 1

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
        for dl in batch.dead_letters:
            kind = "item" if dl.message.topic == self.settings.kafka.topics.items else "event"
            result.counts[(kind, Outcome.DEAD_LETTERED.value)] += 1

        for _ in batch.items:
            result.counts[("item", Outcome.STORED.value)] += 1
        with _sink("redis"):
            result.redis_ops = self.effects.apply(messages, batch, inserted, stored_src, guard, now_s)
        return result
