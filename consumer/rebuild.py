"""Recompute every piece of derived Redis state from MongoDB, and compare two states.

``rebuild_cache`` replays the stored catalog and all stored events (in time order, in batches)
through the same plan functions live consumption uses, for the clock ``now_s``. Markers only grow
(every user with events gets one more bump) and applied offsets are kept, so a rebuild is safe to
run on the live prefix; into a separate prefix it gives a reference to compare a live state against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer.plans import PlannedEvent, plan_catalog_item, plan_events
from core.settings import Settings
from storage.event_store import EventStore
from storage.realtime_state import Op, RealtimeState, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildStats:
    items: int
    events: int
    keys_cleared: int
    seconds: float


def rebuild_cache(
    settings: Settings,
    store: EventStore,
    state: RealtimeState,
    *,
    now_s: float | None = None,
    batch_size: int = 5000,
    on_progress: Callable[[int], None] | None = None,
) -> RebuildStats:
    """Clear ``state``'s derived keys and rebuild them from ``store``; ``on_progress(n_events)`` per batch."""
    started = time.monotonic()
    now_s = time.time() if now_s is None else now_s
    cleared = state.clear_derived()
    items = 0
    for batch in store.iter_items(batch_size=batch_size):
        ops: list[Op] = []
        for doc in batch:
            ops += plan_catalog_item(state.keys, doc)
        state.apply(ops, {})
        items += len(batch)
    events = 0
    for docs in store.iter_events(batch_size=batch_size):
        ops = plan_events(
            state.keys,
            [PlannedEvent.from_doc(d) for d in docs],
            weights=settings.model.weights,
            recent_max=settings.consumer.recent_max,
            now_s=now_s,
        )
        state.apply(ops, {})
        events += len(docs)
        if on_progress is not None:
            on_progress(len(docs))
    stats = RebuildStats(items, events, cleared, time.monotonic() - started)
    log.info(
        "event=cache_rebuilt prefix=%s items=%d events=%d keys_cleared=%d seconds=%.1f",
        state.keys.prefix,
        items,
        events,
        cleared,
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
