"""The Redis half of a batch: guarded, exactly-once effects, after MongoDB has stored the batch.

Order per attempt: read the guard (generation marker + applied offsets of the batch's partitions),
rebuild Redis from MongoDB first if the marker is missing (an empty Redis), decide which records are
fresh, plan their effects, and hand plan and guard to the atomic ``apply``. If the guard moved in the
meantime (a zombie member applied the same records, another member rebuilt) nothing was written and
the attempt is made again with a fresh read, so the effects of a record are applied exactly once.

While Redis is unreachable the batch still reaches MongoDB and the dead-letter topic: dead letters
are judged against the applied offsets this process last saw (records it cannot judge wait for
Redis), and the ones sent are remembered until the batch succeeds, so a retry does not send them
again. The batch then fails with ``SinkUnavailable("redis")`` and is retried; its Kafka offsets are
committed only after the Redis step succeeded too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from consumer.batch import (
    Classified,
    DeadLetter,
    Decision,
    RawMessage,
    advanced_applied,
    is_fresh,
)
from consumer.plans import PlannedEvent, plan_events, plan_item_updates
from consumer.rebuild import auto_rebuild
from core.errors import DependencyUnavailable
from core.realtime_ops import ApplyStatus, Guard, TopicPartition
from core.settings import Settings
from storage.event_store import EventStore
from storage.realtime_state import RealtimeState

log = logging.getLogger(__name__)

# Time given to other members' in-flight MongoDB inserts before a rebuild reads offsets (see
# consumer.rebuild, point 1): one insert of a batch takes well under a second.
REBUILD_SETTLE_S = 2.0

# A guard moves under a live batch only when another writer races this one; a handful of re-plans
# settles it, and beyond that the batch is retried with backoff like any other Redis trouble.
GUARD_ATTEMPTS = 5


class GuardContended(DependencyUnavailable):
    """The applied offsets kept moving while this member tried to apply its batch."""


class RedisEffects:
    def __init__(self, settings: Settings, store: EventStore, state: RealtimeState) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.last_error: Exception | None = None
        # Applied offsets as last read or written by this process: a lower bound that lets dead
        # letters go out while Redis is down (only this member writes its partitions' offsets).
        self._known: dict[TopicPartition, int] = {}
        # (topic, partition, offset) of dead letters sent for the batch in hand.
        self._sent: set[tuple[str, int, int]] = set()
        # The runner points this at its stop flag: a rebuild then ends between two of its batches,
        # so SIGTERM is not held up by a long rebuild (the next consumer starts it over).
        self.should_stop: Callable[[], bool] = lambda: False
        self.rebuild_settle_s = REBUILD_SETTLE_S

    def read_guard(self, partitions: Iterable[TopicPartition]) -> Guard | None:
        """The guard, or None (with ``last_error`` set) when Redis cannot be reached."""
        try:
            guard = self.state.guard(partitions)
        except RedisError as exc:
            self.last_error = exc
            return None
        if guard.generation is not None:
            self._known.update(guard.applied)
        return guard

    def due_dead_letters(self, dead: list[DeadLetter], guard: Guard | None) -> list[DeadLetter]:
        """Dead letters to send now: not sent for this batch yet, above the applied offset."""
        out = []
        for dl in dead:
            msg = dl.message
            if (msg.topic, msg.partition, msg.offset) in self._sent:
                continue
            if guard is not None:
                due = is_fresh(msg, guard.applied)
            else:
                known = self._known.get(msg.tp)
                due = known is not None and msg.offset > known
            if due:
                out.append(dl)
        return out

    def dead_lettered(self, sent: Iterable[DeadLetter]) -> None:
        self._sent.update((d.message.topic, d.message.partition, d.message.offset) for d in sent)

    def apply(
        self,
        messages: list[RawMessage],
        batch: Classified,
        decide: Callable[[Mapping[TopicPartition, int]], list[Decision]],
        guard: Guard | None,
        now_s: float,
    ) -> int:
        """Apply the fresh effects of a stored batch once; returns the number of Redis ops."""
        if guard is None:
            raise DependencyUnavailable(f"Redis is unreachable: {self.last_error}")
        tps = {m.tp for m in messages}
        for attempt in range(1, GUARD_ATTEMPTS + 1):
            if attempt > 1:
                guard = self.state.guard(tps)
            if guard.generation is None:
                # Rebuilt from MongoDB, which already holds this batch: afterwards the guard says
                # which of its records the rebuild covered (see consumer.rebuild).
                self._rebuild(now_s)
                continue
            ops, new_applied = self._plan(messages, batch, decide, guard.applied, now_s)
            if not ops and not new_applied:
                break
            status = self.state.apply(ops, new_applied, expected=guard.applied, generation=guard.generation)
            if status is ApplyStatus.OK:
                self._known.update(guard.applied)
                self._known.update(new_applied)
                self._forget_sent()
                return len(ops)
            log.info("event=redis_guard_moved check=%s attempt=%d action=replan", status.value, attempt)
        else:
            raise GuardContended(f"Redis guard kept moving over {GUARD_ATTEMPTS} attempts")
        self._known.update(guard.applied)
        self._forget_sent()
        return 0

    def _forget_sent(self) -> None:
        """Drop the sent marks the applied offsets now cover. Marks above them stay: records stored
        while Redis was down (``consumer.store_ahead``) are read again over several batches, and a
        dead letter sent then must not go out a second time."""
        self._sent = {(t, p, o) for t, p, o in self._sent if o > self._known.get((t, p), -1)}

    def _plan(
        self,
        messages: list[RawMessage],
        batch: Classified,
        decide: Callable[[Mapping[TopicPartition, int]], list[Decision]],
        applied: Mapping[TopicPartition, int],
        now_s: float,
    ) -> tuple[list[Any], dict[TopicPartition, int]]:
        keys = self.state.keys
        decisions = decide(applied)
        ops = plan_events(
            keys,
            [PlannedEvent.from_event(e) for _m, e, _o, apply in decisions if apply],
            weights=self.settings.model.weights,
            recent_max=self.settings.consumer.recent_max,
            now_s=now_s,
        )
        fresh_items = [u for m, u in batch.items if is_fresh(m, applied)]
        if fresh_items:
            current = self.state.item_categories(u.item_id for u in fresh_items)
            ops += plan_item_updates(keys, fresh_items, current)
        return ops, advanced_applied(messages, applied)

    def rebuild_if_empty(self, now_s: float) -> bool:
        """At start: rebuild now when Redis has no generation marker (restarted empty, or a new key
        layout after an upgrade, see ``core.keys``) rather than at the first batch, so serving does
        not read "no history" for as long as no events arrive. One try: Redis or MongoDB down, or
        another member rebuilding, leaves it to the per-batch check. True when it rebuilt."""
        try:
            if self.state.guard([]).generation is not None:
                return False
            self._rebuild(now_s)
        except (RedisError, PyMongoError, DependencyUnavailable) as exc:
            log.warning("event=startup_rebuild_skipped error=%s action=rebuild_at_first_batch", exc)
            return False
        return True

    def _rebuild(self, now_s: float) -> None:
        stats = auto_rebuild(
            self.settings,
            self.store,
            self.state,
            reason="generation_missing",
            now_s=now_s,
            should_stop=self.should_stop,
            settle_s=self.rebuild_settle_s,
        )
        # Offsets this process saw before are void: the rebuild set new ones.
        self._known.clear()
        log.debug("event=redis_rebuild_done generation=%s", stats.generation)
