"""Read paths: recommendations (cache, Redis state, ranking), similar items, popular items.

A recommendation costs one Redis pipeline (marker + cached result + recent events + purchases) and
one vector search; popularity, availability and category lists come from in-process snapshots.

A cached result is used only when its tag matches: the model version and the catalog tag (a digest
of the unavailable set this replica holds, see ``RealtimeSnapshots``), so an item made unavailable
turns every cached list into a miss as soon as the replica has the new set; and never for a user
this replica knows to be erased (the cache entry may predate the erasure).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from core.cache_payload import cache_payload, cache_tag, cached_items_for
from core.keys import ALL_TIME
from core.log_context import current_request_id
from core.recent import RecentEvent
from core.settings import Settings
from serving.cold_start import cold_tag, label_cold, label_similar
from serving.exclusion import excluded_items, needs_seen
from serving.experiments import Arm, ExperimentHolder
from serving.impressions import Shown, offer
from serving.merchandising import NO_MERCH, Merch, Merchandiser
from serving.metrics import ServingMetrics
from serving.model_holder import ModelHolder
from serving.model_port import LoadedModel
from serving.popularity import TOP_UP_WINDOWS, RealtimeSnapshots
from serving.ranking import Filters, Ranked, popular_only, recommend
from serving.recs_query import RecsQuery, recent_distinct
from serving.segment_fallback import SegmentFallback
from serving.service_errors import NotFound, Unavailable
from serving.shadow import ShadowJob, ShadowRunner
from storage.errors import RealtimeUnavailable
from storage.impression_log import ImpressionLog
from storage.realtime_reader import RealtimeReader, UserSnapshot, now_ms

log = logging.getLogger(__name__)


class ReadService:
    def __init__(
        self,
        settings: Settings,
        reader: RealtimeReader,
        holder: ModelHolder,
        snapshots: RealtimeSnapshots,
        metrics: ServingMetrics,
        *,
        experiments: ExperimentHolder | None = None,
        impression_log: ImpressionLog | None = None,
        shadow: ShadowRunner | None = None,
        merchandiser: Merchandiser | None = None,
        segments: SegmentFallback | None = None,
    ) -> None:
        self.merchandiser = merchandiser
        self.settings = settings
        self.reader = reader
        self.holder = holder
        self.snapshots = snapshots
        self.metrics = metrics
        self.experiments = experiments
        self.impression_log = impression_log
        self.shadow = shadow
        # Segment popularity for shoppers without history (serving.segment_fallback).
        self.segments = segments

    def merch(self, given: Merch | None = None) -> Merch:
        """The request's merchandising: taken once, so one answer follows one rules version."""
        if given is not None:
            return given
        return self.merchandiser.for_request() if self.merchandiser is not None else NO_MERCH

    def _arm(self, surface: str, user_id: str | None) -> Arm:
        """The model (and experiment variant) that answers; grabbed once per request, so a concurrent
        swap does not affect it."""
        if self.experiments is None:
            return Arm(self.holder.current)
        return self.experiments.choose(surface, user_id)

    def _shadow(
        self, request_id: str, q: RecsQuery, snap: UserSnapshot | None, filters: Filters | None
    ) -> None:
        """Hand the inputs already read to the shadow worker (sampled requests only; never waits)."""
        if self.shadow is None or not self.shadow.sampled(request_id):
            return
        job = ShadowJob(
            request_id,
            q.user_id,
            q.k,
            q.category,
            q.exclude,
            q.include_purchased,
            q.exclude_seen,
            snap,
            filters,
            now_ms(),
            self.holder.is_erased(q.user_id),
        )
        self.shadow.submit(job)

    async def _store(self, user_id: str, params: str, marker: int, payload: bytes) -> None:
        with contextlib.suppress(RealtimeUnavailable):
            await self.reader.store_cached(
                user_id, params, marker, payload, self.settings.serving.cache_ttl_s
            )

    async def _popular_sources(
        self, loaded: LoadedModel | None, category: str | None, depth: int
    ) -> Iterator[Sequence[tuple[str, float]]]:
        """Top-up candidates; the model's own popularity list is only built when the snapshots
        run out, since most requests fill ``k`` from the model and never reach it."""
        found = [await self.snapshots.popular(window, category) for window in TOP_UP_WINDOWS]

        def sources() -> Iterator[Sequence[tuple[str, float]]]:
            yield from (items for items in found if items)
            if loaded is not None and category is None:
                yield loaded.model.popular_items(depth)

        return sources()

    async def recommendations(self, q: RecsQuery) -> dict[str, Any]:
        arm = self._arm("recommendations", q.user_id)
        loaded = arm.loaded
        version = loaded.version if loaded is not None else None
        # Taken before the unavailable set is read below: a result stored under this tag was
        # filtered with this catalog state or a newer one.
        # ... and with the cold items this model generation held (a new item is a miss at once).
        tag = cache_tag(version, self.snapshots.catalog_tag + cold_tag(loaded.model if loaded else None))
        request_id = current_request_id()
        serving = self.settings.serving
        merch = self.merch(q.merch)
        # The rules version (and a filter's catalog version) is part of the key: a change is a miss.
        params = q.cache_params(arm.cache_key, merch.cache_key()) if serving.cache_ttl_s > 0 else None
        # One read serves both the session vector and the recent exclusion.
        recent_n = max(serving.recent_events_for_session, serving.exclusion.recent_events)
        snap: UserSnapshot | None
        try:
            snap = await self.reader.user_snapshot(
                q.user_id, params, recent_n, with_seen=needs_seen(q.exclude_seen)
            )
        except RealtimeUnavailable:
            snap = None
            # Answers served from the snapshots are stale from now on too, not only after their
            # own next refresh fails.
            self.snapshots.mark_unhealthy()
        if snap is not None and snap.cached is not None:
            cached_items = cached_items_for(snap.cached, tag)
            if cached_items is not None and not self.holder.is_erased(q.user_id):
                self.metrics.cache_hits.inc()
                self._shown(request_id, q.user_id, arm, cached_items)
                self._shadow(request_id, q, snap, None)
                return {
                    "user_id": q.user_id,
                    "items": orjson.Fragment(cached_items),
                    "model_version": version,
                    "degraded": False,
                    "request_id": request_id,
                    **arm.fields(),
                }
        self.metrics.cache_misses.inc()

        degraded = snap is None
        allowed: frozenset[str] | None = None
        if q.category is not None:
            allowed = await self.snapshots.category(q.category)
            if allowed is None:
                degraded = True
                allowed = frozenset()
        # A cached list keeps what it excluded for up to cache_ttl_s: an item leaves the recent
        # window that much later, never earlier (each new event changes the marker: a miss).
        done = (
            frozenset()
            if snap is None
            else excluded_items(
                serving.exclusion.recommendations,
                serving.exclusion,
                recent=snap.recent,
                purchased=snap.purchased,
                seen=snap.seen,
                now_ms=now_ms(),
                include_purchased=q.include_purchased,
                exclude_seen=q.exclude_seen,
            )
        )
        filters = Filters(
            exclude=q.exclude | done if done else q.exclude,
            unavailable=await self.snapshots.unavailable(),
            allowed=allowed,
            extra=merch.predicate,
            extra_share=merch.share,
        )
        fetch_k = merch.fetch(q.k)
        popular = await self._popular_sources(loaded, q.category, fetch_k + filters.n_blocked_hint)
        ranked = recommend(
            loaded.model if loaded is not None else None,
            user_id=q.user_id,
            k=fetch_k,
            recent=snap.recent[: serving.recent_events_for_session] if snap is not None else (),
            filters=filters,
            popular=popular,
            session_weight=serving.session_weight if arm.session_weight is None else arm.session_weight,
            weights=self.settings.model.weights,
            erased=self.holder.is_erased(q.user_id),
        )
        ranked = label_cold(loaded.model if loaded is not None else None, ranked)
        if self.segments is not None:
            erased = self.holder.is_erased(q.user_id)
            ranked = await self.segments.apply(loaded, q.user_id, ranked, q.k, filters, erased=erased)
        ranked = merch.finish(ranked, q.k, filters.blocks)
        self._count(loaded, ranked, degraded)
        # Serialized once: the same bytes go into the cache entry and, as a fragment, the response.
        items_json = orjson.dumps([r.to_json() for r in ranked])
        if params is not None and snap is not None and not degraded:
            await self._store(q.user_id, params, snap.marker, cache_payload(tag, items_json))
        self._shown(request_id, q.user_id, arm, ranked)
        self._shadow(request_id, q, snap, filters)
        return {
            "user_id": q.user_id,
            "items": orjson.Fragment(items_json),
            "model_version": version,
            "degraded": degraded,
            "request_id": request_id,
            **arm.fields(),
        }

    def _shown(self, request_id: str, user_id: str, arm: Arm, items: Sequence[Ranked] | bytes) -> None:
        """Log the recommendations list answered (built into an impression off the request path)."""
        version = arm.loaded.version if arm.loaded is not None else None
        shown = Shown(
            request_id, "recommendations", user_id, version, items, now_ms(), arm.experiment_id, arm.variant
        )
        offer(self.impression_log, shown)

    def _count(self, loaded: LoadedModel | None, ranked: list[Ranked], degraded: bool) -> None:
        if degraded:
            self.metrics.degraded.inc()
            self.metrics.fallbacks.labels(kind="redis_unavailable").inc()
        if loaded is None:
            self.metrics.fallbacks.labels(kind="no_model").inc()
        elif ranked and all(r.kind in ("popular", "segment_popular") for r in ranked):
            self.metrics.fallbacks.labels(kind="popular").inc()
        elif ranked and ranked[-1].kind == "popular":
            self.metrics.fallbacks.labels(kind="top_up").inc()

    async def similar(
        self,
        item_id: str,
        k: int,
        user_id: str | None = None,
        include_purchased: bool | None = None,
        exclude_seen: bool | None = None,
        merch: Merch | None = None,
    ) -> dict[str, Any]:
        """Items like ``item_id``, never the item itself; for a given shopper, without what the
        exclusion policy's ``similar`` surface leaves out."""
        merch = self.merch(merch)
        arm = self._arm("similar", user_id)
        loaded = arm.loaded
        if loaded is None:
            raise Unavailable("no_model", "no model is loaded yet; similar items need a trained model")
        if not loaded.model.knows_item(item_id):
            raise NotFound("unknown_item", f"item {item_id!r} is not known to model {loaded.version}")
        unavailable = await self.snapshots.unavailable()
        blocked: frozenset[str] = frozenset()
        degraded = False
        if user_id is not None:
            policy = self.settings.serving.exclusion
            try:
                snap = await self.reader.user_snapshot(
                    user_id, None, policy.recent_events, with_seen=needs_seen(exclude_seen)
                )
            except RealtimeUnavailable:
                # The list itself needs no Redis: answered without the shopper's exclusions.
                degraded = True
                self.snapshots.mark_unhealthy()
                self.metrics.degraded.inc()
            else:
                blocked = excluded_items(
                    policy.similar,
                    policy,
                    recent=snap.recent,
                    purchased=snap.purchased,
                    seen=snap.seen,
                    now_ms=now_ms(),
                    include_purchased=include_purchased,
                    exclude_seen=exclude_seen,
                )
        fetch_k = merch.fetch(k)
        fetch = fetch_k + min(len(unavailable), 500) + min(len(blocked), 2000) + 1
        if merch.share < 1.0:
            fetch = max(fetch, int(fetch_k / max(merch.share, 1e-3)))
        found = loaded.model.similar(item_id, min(loaded.model.n_items, fetch))
        filters = Filters(exclude=blocked | {item_id}, unavailable=unavailable, extra=merch.predicate)
        candidates = [
            Ranked(iid, score, "similar_to", item_id) for iid, score in found if not filters.blocks(iid)
        ]
        candidates = label_similar(loaded.model, item_id, candidates)
        ranked = merch.finish(candidates, k, filters.blocks)
        request_id = current_request_id()
        shown = Shown(
            request_id,
            "similar",
            user_id,
            loaded.version,
            ranked,
            now_ms(),
            arm.experiment_id,
            arm.variant,
            anchor_item_id=item_id,
        )
        offer(self.impression_log, shown)
        return {
            "item_id": item_id,
            "user_id": user_id,
            "items": [r.to_json() for r in ranked],
            "model_version": loaded.version,
            "degraded": degraded,
            "request_id": request_id,
            **arm.fields(),
        }

    async def recent(self, user_id: str, limit: int) -> dict[str, Any]:
        """The shopper's recently interacted items (distinct, newest first) for a "recently viewed"
        widget; Redis keeps the newest ``consumer.recent_max`` interactions."""
        degraded = False
        events: tuple[RecentEvent, ...] = ()
        try:
            events = await self.reader.recent_events(user_id, self.settings.consumer.recent_max)
        except RealtimeUnavailable:
            degraded = True
            self.snapshots.mark_unhealthy()
            self.metrics.degraded.inc()
        return {
            "user_id": user_id,
            "items": recent_distinct(events, limit),
            "degraded": degraded,
            "request_id": current_request_id(),
        }

    async def popular(
        self, k: int, window: str, category: str | None, merch: Merch | None = None
    ) -> dict[str, Any]:
        merch = self.merch(merch)
        fetch_k = merch.fetch(k, in_memory=True)
        loaded = self.holder.current
        items = await self.snapshots.popular(window, category)
        degraded = items is None or not self.snapshots.healthy
        sources: list[Sequence[tuple[str, float]]] = [items or []]
        if len(items or []) < fetch_k and category is None and loaded is not None:
            # A fresh deployment (or Redis never reached): the training data's popularity fills in.
            self.metrics.fallbacks.labels(kind="model_popularity").inc()
            sources.append(loaded.model.popular_items(int(fetch_k / max(merch.share, 1e-2)) + 50))
        if degraded:
            self.metrics.degraded.inc()
            self.metrics.fallbacks.labels(kind="redis_unavailable").inc()
        unavailable = await self.snapshots.unavailable()
        filters = Filters(unavailable=unavailable, extra=merch.predicate)
        ranked = merch.finish(popular_only(fetch_k, filters, sources), k, filters.blocks)
        request_id = current_request_id()
        version = loaded.version if loaded is not None else None
        offer(self.impression_log, Shown(request_id, "popular", None, version, ranked, now_ms()))
        return {
            "items": [r.to_json() for r in ranked],
            "window": window,
            "category": category,
            "model_version": version,
            "degraded": degraded,
            "request_id": request_id,
        }


WINDOW_DEFAULT = ALL_TIME
