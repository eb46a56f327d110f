"""Recompute every piece of derived Redis state from MongoDB, and compare two states.

``rebuild_cache`` replays the stored catalog and stored events (in time order, in batches) through
the same plan functions live consumption uses, for the clock ``now_s``. Markers only grow (every user
with events gets one more bump). Into a separate prefix it gives a reference to compare a live state
against; on the live prefix it is safe while consumers run, and the consumer runs it by itself
(``auto_rebuild``) when it finds Redis empty.

Why effects are neither lost nor doubled by a rebuild (the applied-offset argument):

1. The consumer stores a batch in MongoDB *before* it touches Redis, and within one partition it
   stores one batch after the other, the next only once the previous one's Redis step succeeded.
   So when a stored event has source offset ``k`` in partition ``tp``, every record of ``tp`` below
   ``k`` that will ever be stored already is, except records of a batch whose insert is still in
   flight: a member starts at most one such insert after the marker is gone (its Redis step is then
   refused, see 2.), and the rebuild waits ``settle_s`` before reading offsets so that an insert
   overlapping that moment has finished. (An insert stalled for longer than that is the remaining
   window; inserting each batch in offset order, ``ordered=True``, would close it.)
2. The rebuild takes the lock ``meta:rebuild-lock`` and removes the generation marker
   ``meta:generation`` first. Every consumer's effects go through the guarded ``apply``, which
   refuses to write without the generation it planned against, so from then on no member adds
   effects (they keep storing in MongoDB and retry; a member that sees the marker missing and the
   lock held waits). A restarted, empty Redis has no marker at all, which is how it is detected.
3. Then it reads ``M[tp]``, the highest stored source offset per partition, and replays exactly
   the events with ``src.offset <= M[tp]`` (and those without a source). Events stored while the
   rebuild runs are above ``M`` (by 1.) and are left to their consumers.
4. It sets ``applied[tp] = max(applied[tp], M[tp])`` and a new generation marker in one step. A
   consumer that retries its batch now reads these offsets: records at or below ``M`` are in the
   rebuilt state and are not applied again; records above it are not and are applied once, by the
   guarded ``apply``. An applied offset above ``M`` (a partition whose last records were dead
   letters) was already right and stays.

Item updates carry no offset in MongoDB: the catalog is rebuilt from the stored items and a
redelivered item update is applied again, which is harmless (it sets the same fields, in order).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer import metrics
from consumer.plans import PlannedEvent, plan_catalog_item, plan_events
from core.errors import DependencyUnavailable
from core.realtime_ops import Op
from core.settings import Settings
from storage.event_store import EventStore
from storage.realtime_state import RealtimeState, Snapshot

log = logging.getLogger(__name__)

# The lease is renewed after every batch; its TTL only has to outlive one batch, and bounds how
# long a crashed rebuild blocks the others.
LOCK_TTL_S = 120.0


class RebuildAborted(DependencyUnavailable):
    """A stop was requested mid-rebuild; the generation marker stays absent, so it starts over."""


@dataclass(frozen=True)
class RebuildStats:
    items: int
    events: int
    keys_cleared: int
    seconds: float
    generation: str = ""


def _covered(doc: dict[str, Any], upto: dict[tuple[str, int], int]) -> bool:
    """True when the event belongs to the rebuild: no source, or a source offset at or below ``upto``."""
    src = doc.get("src")
    if not src or src.get("offset") is None:
        return True
    return int(src["offset"]) <= upto.get((str(src["topic"]), int(src["partition"])), -1)


def rebuild_cache(
    settings: Settings,
    store: EventStore,
    state: RealtimeState,
    *,
    now_s: float | None = None,
    batch_size: int = 5000,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    settle_s: float = 0.0,
) -> RebuildStats:
    """Clear ``state``'s derived keys and rebuild them from ``store``; ``on_progress(n_events)`` per batch.

    Raises ``DependencyUnavailable`` when another process is rebuilding the same prefix, and
    ``RebuildAborted`` between batches once ``should_stop()`` is true (a consumer asked to stop).
    ``settle_s``: how long to let in-flight MongoDB inserts of running consumers finish (point 1).
    """

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise RebuildAborted(f"rebuild of Redis prefix {state.keys.prefix!r} stopped before the end")

    started = time.monotonic()
    now_s = time.time() if now_s is None else now_s
    lease = state.acquire_rebuild_lock(LOCK_TTL_S)
    if lease is None:
        raise DependencyUnavailable(f"another process is rebuilding Redis prefix {state.keys.prefix!r}")
    try:
        state.drop_generation()
        if settle_s > 0:
            time.sleep(settle_s)
        upto = store.max_source_offsets()
        cleared = state.clear_derived()
        items = 0
        for batch in store.iter_items(batch_size=batch_size):
            ops: list[Op] = []
            for doc in batch:
                ops += plan_catalog_item(state.keys, doc)
            state.apply(ops, {})
            lease.extend()
            check_stop()
            items += len(batch)
        events = 0
        for docs in store.iter_events(batch_size=batch_size):
            planned = [PlannedEvent.from_doc(d) for d in docs if _covered(d, upto)]
            ops = plan_events(
                state.keys,
                planned,
                weights=settings.model.weights,
                recent_max=settings.consumer.recent_max,
                now_s=now_s,
            )
            state.apply(ops, {})
            lease.extend()
            check_stop()
            events += len(planned)
            if on_progress is not None:
                on_progress(len(docs))
        generation = uuid.uuid4().hex
        state.finish_rebuild(generation, upto)
    finally:
        lease.release()
    stats = RebuildStats(items, events, cleared, time.monotonic() - started, generation)
    log.info(
        "event=cache_rebuilt prefix=%s items=%d events=%d keys_cleared=%d seconds=%.1f",
        state.keys.prefix,
        items,
        events,
        cleared,
        stats.seconds,
    )
    return stats


def auto_rebuild(
    settings: Settings,
    store: EventStore,
    state: RealtimeState,
    *,
    reason: str,
    now_s: float,
    should_stop: Callable[[], bool] | None = None,
    settle_s: float = 0.0,
) -> RebuildStats:
    """The consumer's rebuild of an empty (restarted, flushed, evicted) Redis: logged and counted."""
    stats = rebuild_cache(settings, store, state, now_s=now_s, should_stop=should_stop, settle_s=settle_s)
    metrics.REDIS_REBUILDS.inc()
    log.warning(
        "event=redis_rebuilt reason=%s events=%d items=%d seconds=%.1f",
        reason,
        stats.events,
        stats.items,
        stats.seconds,
    )
    return stats


def snapshot_state(state: RealtimeState, now_s: float) -> Snapshot:
    """Comparable view of a state: recent lists, purchased/seen sets, popularity, catalog.

    Popularity is given per window as the live buckets at ``now_s`` (rounded scores); markers and
    applied offsets are left out.
    """
    return state.snapshot(now_s)


def diff_snapshots(a: Snapshot, b: Snapshot, limit: int = 20) -> list[str]:
    """Human-readable differences (at most ``limit``); empty when the states are equal."""
    out: list[str] = []

    def walk(path: str, x: Any, y: Any) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if k not in x:
                    out.append(f"{path}/{k}: only in second: {str(y[k])[:200]}")
                elif k not in y:
                    out.append(f"{path}/{k}: only in first: {str(x[k])[:200]}")
                else:
                    walk(f"{path}/{k}", x[k], y[k])
                if len(out) >= limit:
                    return
        elif x != y:
            out.append(f"{path}: {str(x)[:200]} != {str(y)[:200]}")

    walk("", a, b)
    return out
