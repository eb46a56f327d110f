"""In-memory twin of the serving Redis read port (``storage.realtime_reader.RealtimeReader``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.cache_payload import cache_entry, split_cached
from core.keys import ALL_TIME, WINDOWS
from core.recent import RecentEvent
from storage.errors import RealtimeUnavailable
from storage.realtime_reader import (
    ErasedState,
    ReplicaSync,
    UserSnapshot,
    now_ms,
)


@dataclass
class InMemoryRealtimeReader:
    """Twin for unit tests. ``record`` applies an event the way the consumer would."""

    up: bool = True
    recent: dict[str, list[RecentEvent]] = field(default_factory=dict)
    purchased: dict[str, set[str]] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)
    pop: dict[str, dict[str, float]] = field(default_factory=lambda: {w: {} for w in (*WINDOWS, ALL_TIME)})
    items: dict[str, dict[str, str]] = field(default_factory=dict)
    categories: dict[str, set[str]] = field(default_factory=dict)
    unavailable_items: set[str] = field(default_factory=set)
    cache: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # item -> first-seen epoch ms (core.keys ``added``).
    added: dict[str, int] = field(default_factory=dict)
    catalog_version: int = 0
    erasure_log: list[str] = field(default_factory=list)
    calls: int = 0

    def _check(self) -> None:
        self.calls += 1
        if not self.up:
            raise RealtimeUnavailable("Redis is unavailable (in-memory twin switched off)")

    def record(
        self,
        user_id: str,
        item_id: str,
        event_type: str = "click",
        ts_ms: int | None = None,
        weight: float = 1.0,
        value: float | None = None,
    ) -> None:
        ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
        events = self.recent.setdefault(user_id, [])
        events.insert(0, RecentEvent(f"ev-{user_id}-{len(events)}-{ts}", item_id, event_type, ts, value))
        events.sort(key=lambda e: e.ts_ms, reverse=True)
        self.seen.setdefault(user_id, set()).add(item_id)
        if event_type == "purchase":
            self.purchased.setdefault(user_id, set()).add(item_id)
        for scores in self.pop.values():
            scores[item_id] = scores.get(item_id, 0.0) + weight
        self.markers[user_id] = self.markers.get(user_id, 0) + 1

    def set_item(
        self, item_id: str, category: str | None = None, available: bool = True, title: str = ""
    ) -> None:
        entry = {"title": title, "available": "1" if available else "0"}
        if category is not None:
            entry["category"] = category
            self.categories.setdefault(category, set()).add(item_id)
        self.items[item_id] = entry
        if available:
            self.unavailable_items.discard(item_id)
        else:
            self.unavailable_items.add(item_id)
        self.catalog_version += 1

    async def user_snapshot(
        self, user_id: str, cache_params: str | None, recent_n: int, *, with_seen: bool = False
    ) -> UserSnapshot:
        self._check()
        marker = self.markers.get(user_id, 0)
        raw = self.cache.get((user_id, cache_params)) if cache_params is not None else None
        return UserSnapshot(
            marker,
            split_cached(raw, marker, now_ms()),
            tuple(self.recent.get(user_id, [])[:recent_n]),
            frozenset(self.purchased.get(user_id, set())),
            frozenset(self.seen.get(user_id, set())) if with_seen else None,
        )

    async def recent_events(self, user_id: str, n: int) -> tuple[RecentEvent, ...]:
        self._check()
        return tuple(self.recent.get(user_id, [])[: max(n, 1)])

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        self._check()
        if ttl_s > 0:
            self.cache[(user_id, cache_params)] = cache_entry(marker, ttl_s, payload, now_ms())

    async def popularity(self, window: str, k: int, category: str | None = None) -> list[tuple[str, float]]:
        self._check()
        if window not in self.pop:
            raise ValueError(f"unknown popularity window {window!r}")
        members = self.categories.get(category, set()) if category is not None else None
        ranked = sorted(
            ((i, s) for i, s in self.pop[window].items() if members is None or i in members),
            key=lambda p: (-p[1], p[0]),
        )
        return ranked[:k]

    async def window_scores(self, window: str, item_ids: Sequence[str]) -> dict[str, float]:
        self._check()
        if window not in WINDOWS:
            raise ValueError(f"unknown popularity window {window!r}")
        scores = self.pop[window]
        return {i: scores[i] for i in item_ids if i in scores}

    async def newest_items(self, k: int, since_ms: int) -> list[tuple[str, int]]:
        self._check()
        # Redis's order: score descending, ties in reverse lexicographic order.
        found = sorted(((i, t) for i, t in self.added.items() if t >= since_ms), key=lambda p: (p[1], p[0]))
        found.reverse()
        return found[:k]

    async def unavailable(self) -> frozenset[str]:
        self._check()
        return frozenset(self.unavailable_items)

    async def category_items(self, category: str) -> frozenset[str]:
        self._check()
        return frozenset(self.categories.get(category, set()))

    async def item(self, item_id: str) -> dict[str, str] | None:
        self._check()
        return self.items.get(item_id)

    async def erase_user(self, user_id: str) -> ErasedState:
        self._check()
        state = sum(
            1
            for store in (self.recent, self.purchased, self.seen, self.markers)
            if store.pop(user_id, None) is not None
        )
        cached_keys = [key for key in self.cache if key[0] == user_id]
        for key in cached_keys:
            del self.cache[key]
        self.erasure_log.append(user_id)
        # Redis counts the one hash key holding all of the user's cached results.
        return ErasedState(state_keys=state, cached_results=int(bool(cached_keys)))

    async def sync(self, since: str) -> ReplicaSync:
        self._check()
        start = int(since) if since.isdigit() else 0
        return ReplicaSync(self.catalog_version, tuple(self.erasure_log[start:]), str(len(self.erasure_log)))

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None
