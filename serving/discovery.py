"""Read paths of the discovery lists: ``GET /v1/trending`` and ``GET /v1/new``.

Trending reads the short window's popularity from the snapshots every request already uses
(``RealtimeSnapshots``), then the long window's scores of those same items (one pipeline: merge +
ZMSCORE), and ranks them by growth (``core.trending``). New arrivals read the ``added`` zset the
consumer keeps (``core.keys``). Both results are held for the snapshot TTL, so a busy endpoint costs
Redis one read per category every couple of seconds; while Redis is down the last result is served,
flagged ``degraded``.

Each answered list is logged as an impression (surfaces ``trending`` and ``new``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from core.keys import WINDOWS
from core.log_context import current_request_id
from core.settings import Settings
from core.trending import TrendScore, exposure_s, trending
from serving.discovery_ranking import new_list, trending_list
from serving.impressions import Shown, offer
from serving.merchandising import NO_MERCH, Merch, Merchandiser
from serving.metrics import ServingMetrics
from serving.model_holder import ModelHolder
from serving.popularity import MAX_CATEGORIES, RealtimeSnapshots
from serving.ranking import Filters
from storage.errors import RealtimeUnavailable
from storage.impression_log import ImpressionLog
from storage.realtime_reader import RealtimeReader, now_ms

T = TypeVar("T")


class Held(Generic[T]):
    """Results per key, reused for ``ttl_s``; the last one is kept to answer while Redis is down."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[object, tuple[float, T]] = {}

    async def get(self, key: object, fetch: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
        """(value, fresh): fresh is False when Redis failed and an older value (or None) is returned."""
        held = self._values.get(key)
        if held is not None and time.monotonic() - held[0] <= self.ttl_s:
            return held[1], True
        try:
            value = await fetch()
        except RealtimeUnavailable:
            return (held[1] if held is not None else None), False
        if len(self._values) > MAX_CATEGORIES:
            self._values.clear()
        self._values[key] = (time.monotonic(), value)
        return value, True


class DiscoveryService:
    def __init__(
        self,
        settings: Settings,
        reader: RealtimeReader,
        holder: ModelHolder,
        snapshots: RealtimeSnapshots,
        metrics: ServingMetrics,
        *,
        impression_log: ImpressionLog | None = None,
        merchandiser: Merchandiser | None = None,
    ) -> None:
        self.merchandiser = merchandiser
        self.settings = settings
        self.reader = reader
        self.holder = holder
        self.snapshots = snapshots
        self.metrics = metrics
        self.impression_log = impression_log
        self._trending: Held[list[TrendScore]] = Held(snapshots.ttl_s)
        self._newest: Held[list[tuple[str, int]]] = Held(snapshots.ttl_s)

    async def _trend_scores(self, category: str | None) -> list[TrendScore]:
        cfg = self.settings.serving.trending
        short = await self.snapshots.popular(cfg.short_window, category)
        if short is None:
            raise RealtimeUnavailable("short-window popularity could not be read")
        long = await self.reader.window_scores(cfg.long_window, [i for i, _s in short])
        now_s = time.time()
        return trending(
            short,
            long,
            short_exposure_s=exposure_s(WINDOWS[cfg.short_window], now_s),
            long_exposure_s=exposure_s(WINDOWS[cfg.long_window], now_s),
            min_count=cfg.min_count,
            prior_count=cfg.prior_count,
        )

    def _merch(self, given: Merch | None) -> Merch:
        if given is not None:
            return given
        return self.merchandiser.for_request() if self.merchandiser is not None else NO_MERCH

    def _degraded(self) -> None:
        self.snapshots.mark_unhealthy()
        self.metrics.degraded.inc()
        self.metrics.fallbacks.labels(kind="redis_unavailable").inc()

    async def trending(self, k: int, category: str | None, merch: Merch | None = None) -> dict[str, Any]:
        merch = self._merch(merch)
        cfg = self.settings.serving.trending
        scores, fresh = await self._trending.get(category, lambda: self._trend_scores(category))
        if not fresh:
            self._degraded()
        unavailable = await self.snapshots.unavailable()
        windows = (cfg.short_window, cfg.long_window)
        filters = Filters(unavailable=unavailable, extra=merch.predicate)
        ranked = merch.finish(
            trending_list(scores or [], merch.fetch(k, in_memory=True), filters, windows), k, filters.blocks
        )
        loaded = self.holder.current
        version = loaded.version if loaded is not None else None
        request_id = current_request_id()
        offer(self.impression_log, Shown(request_id, "trending", None, version, ranked, now_ms()))
        return {
            "items": [r.to_json() for r in ranked],
            "category": category,
            "short_window": cfg.short_window,
            "long_window": cfg.long_window,
            "model_version": version,
            "degraded": not fresh,
            "request_id": request_id,
        }

    async def new(
        self, k: int, category: str | None, user_id: str | None, merch: Merch | None = None
    ) -> dict[str, Any]:
        merch = self._merch(merch)
        cfg = self.settings.serving.new
        since_ms = now_ms() - int(cfg.max_age_days * 86_400_000)
        depth = max(self.snapshots.depth, cfg.pool)
        # One list for every category: the category filter below is applied to it.
        newest, fresh = await self._newest.get("all", lambda: self.reader.newest_items(depth, since_ms))
        allowed = None
        if category is not None:
            allowed = await self.snapshots.category(category)
            if allowed is None:
                fresh, allowed = False, frozenset()
        if not fresh:
            self._degraded()
        # A held list may be older than the age limit by now.
        recent = [(i, t) for i, t in newest or [] if t >= since_ms]
        filters = Filters(
            unavailable=await self.snapshots.unavailable(), allowed=allowed, extra=merch.predicate
        )
        loaded = self.holder.current
        user_vector = None
        if user_id is not None and loaded is not None and not self.holder.is_erased(user_id):
            user_vector = loaded.model.user_vector(user_id)
        ranked = new_list(
            recent,
            merch.fetch(k, in_memory=True),
            filters,
            model=loaded.model if loaded is not None else None,
            user_vector=user_vector,
            pool=cfg.pool,
        )
        ranked = merch.finish(ranked, k, filters.blocks)
        version = loaded.version if loaded is not None else None
        request_id = current_request_id()
        offer(self.impression_log, Shown(request_id, "new", user_id, version, ranked, now_ms()))
        return {
            "items": [r.to_json() for r in ranked],
            "category": category,
            "user_id": user_id,
            "personalized": user_vector is not None,
            "model_version": version,
            "degraded": not fresh,
            "request_id": request_id,
        }
