"""In-process snapshots of Redis-held lists the hot path needs but need not read per request.

Popularity per (window, category), the ``unavailable`` set and category member sets are refreshed
in the background while Redis is up; requests read the snapshot (stale-while-revalidate), so a
recommendation costs one Redis round trip, and a Redis outage still has popularity to fall back on.

``catalog_tag`` is a digest of the unavailable set held: cached recommendations carry the tag they
were computed under, so a changed set makes them misses. It is a content digest, not a counter, so
replicas holding the same set agree on it (they share the cache) whatever order they saw changes in.
``replica_sync`` refetches the set as soon as the consumer bumps ``catalog:version``; the periodic
refresh here is the backstop for changes made without a bump.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from core.keys import ALL_TIME, POPULARITY_WINDOWS
from storage.errors import RealtimeUnavailable
from storage.realtime_reader import RealtimeReader

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_CATEGORIES = 1000


class Snapshot(Generic[T]):
    def __init__(self, value: T, fetched_at: float) -> None:
        self.value = value
        self.fetched_at = fetched_at


class RealtimeSnapshots:
    def __init__(self, reader: RealtimeReader, *, ttl_s: float = 2.0, depth: int = 1000) -> None:
        self.reader = reader
        self.ttl_s = ttl_s
        self.depth = depth
        self._popular: dict[tuple[str, str | None], Snapshot[list[tuple[str, float]]]] = {}
        self._categories: dict[str, Snapshot[frozenset[str]]] = {}
        self._unavailable: Snapshot[frozenset[str]] | None = None
        # b"-" until the set was fetched once.
        self.catalog_tag = b"-"
        self._inflight: dict[object, asyncio.Task[object]] = {}
        # False after a Redis failure until a fetch succeeds again: answers are then flagged degraded.
        self.healthy = True

    def _spawn(self, key: object, make: Callable[[], Awaitable[object]]) -> None:
        if key in self._inflight:
            return

        async def run() -> object:
            try:
                value = await make()
            except RealtimeUnavailable:
                self.healthy = False
                return None
            finally:
                self._inflight.pop(key, None)
            self.healthy = True
            return value

        self._inflight[key] = asyncio.ensure_future(run())

    async def _fetch_popular(self, window: str, category: str | None) -> list[tuple[str, float]]:
        items = await self.reader.popularity(window, self.depth, category)
        if category is not None and len(self._popular) > MAX_CATEGORIES * 3:
            self._popular = {k: v for k, v in self._popular.items() if k[1] is None}
        self._popular[(window, category)] = Snapshot(items, time.monotonic())
        return items

    async def _fetch_category(self, category: str) -> frozenset[str]:
        members = await self.reader.category_items(category)
        if len(self._categories) > MAX_CATEGORIES:
            self._categories.clear()
        self._categories[category] = Snapshot(members, time.monotonic())
        return members

    async def _fetch_unavailable(self) -> frozenset[str]:
        members = await self.reader.unavailable()
        previous = self._unavailable
        if previous is None or previous.value != members:
            self.catalog_tag = catalog_digest(members)
        # Value and tag change together (no await in between): a request never pairs a new tag
        # with the old set.
        self._unavailable = Snapshot(members, time.monotonic())
        return members

    async def refresh_unavailable(self) -> frozenset[str]:
        """Fetch the unavailable set now (the catalog changed); raises ``RealtimeUnavailable``."""
        return await self._fetch_unavailable()

    async def _get(
        self, snap: Snapshot[T] | None, key: object, fetch: Callable[[], Awaitable[T]]
    ) -> T | None:
        """Fresh: return it. Stale: return it and refresh in the background. Missing: fetch now."""
        if snap is not None:
            if time.monotonic() - snap.fetched_at > self.ttl_s:
                self._spawn(key, fetch)
            return snap.value
        try:
            value = await fetch()
        except RealtimeUnavailable:
            self.healthy = False
            return None
        self.healthy = True
        return value

    async def popular(self, window: str, category: str | None = None) -> list[tuple[str, float]] | None:
        key = (window, category)
        return await self._get(
            self._popular.get(key), ("pop", key), lambda: self._fetch_popular(window, category)
        )

    async def category(self, category: str) -> frozenset[str] | None:
        return await self._get(
            self._categories.get(category), ("cat", category), lambda: self._fetch_category(category)
        )

    async def unavailable(self) -> frozenset[str]:
        value = await self._get(self._unavailable, "unavailable", self._fetch_unavailable)
        return value if value is not None else frozenset()

    def mark_unhealthy(self) -> None:
        """Another Redis read failed; the next successful fetch marks the snapshots healthy again."""
        self.healthy = False

    def peek_popular(self, window: str, category: str | None = None) -> list[tuple[str, float]] | None:
        snap = self._popular.get((window, category))
        return snap.value if snap is not None else None

    def peek_unavailable(self) -> frozenset[str]:
        """The unavailable set held now, without fetching (for work done outside the event loop)."""
        snap = self._unavailable
        return snap.value if snap is not None else frozenset()

    def peek_category(self, category: str) -> frozenset[str] | None:
        snap = self._categories.get(category)
        return snap.value if snap is not None else None

    async def refresh(self) -> bool:
        """Refresh the snapshots every request uses; False when Redis is down (snapshots kept)."""
        try:
            for window in POPULARITY_WINDOWS:
                await self._fetch_popular(window, None)
            await self._fetch_unavailable()
        except RealtimeUnavailable as exc:
            self.healthy = False
            log.debug("event=snapshot_refresh_skipped error=%s", exc)
            return False
        self.healthy = True
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=snapshot_refresh_failed")
            await asyncio.sleep(self.ttl_s)


def catalog_digest(unavailable: frozenset[str]) -> bytes:
    """Order-independent digest of a set of item ids, the same in every process (hex, no ':')."""
    joined = "\n".join(sorted(unavailable)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=8).hexdigest().encode()


TOP_UP_WINDOWS: tuple[str, ...] = ("7d", ALL_TIME)
