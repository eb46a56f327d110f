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
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from core.keys import ALL_TIME
from core.log_context import current_request_id
from core.settings import Settings
from serving.errors import ApiError
from serving.metrics import ServingMetrics
from serving.model_holder import ModelHolder
from serving.model_port import LoadedModel
from serving.popularity import TOP_UP_WINDOWS, RealtimeSnapshots
from serving.ranking import Filters, Ranked, popular_only, recommend
from storage.realtime_reader import RealtimeReader, RealtimeUnavailable, UserSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecsQuery:
    user_id: str
    k: int
    exclude: frozenset[str]
    category: str | None
    include_purchased: bool

    def cache_params(self) -> str:
        """Stable, short key part: every parameter that changes the answer."""
        excl = ",".join(sorted(self.exclude))
        digest = hashlib.blake2b(excl.encode(), digest_size=8).hexdigest() if excl else "-"
        return f"k{self.k}:p{int(self.include_purchased)}:x{digest}:c{self.category or ''}"


def cache_tag(version: str | None, catalog_tag: bytes) -> bytes:
    """What a cached result must have been computed with: model version and catalog state."""
    return (version if version is not None else "-").replace(":", "_").encode() + b"|" + catalog_tag


def cache_payload(tag: bytes, items_json: bytes) -> bytes:
    """``{tag}:{items JSON}``; a result computed under another tag is a miss."""
    return tag + b":" + items_json


def cached_items_for(payload: bytes, tag: bytes) -> bytes | None:
    head, sep, items_json = payload.partition(b":")
    if not sep or head != tag or not items_json:
        return None
    return items_json


class ReadService:
    def __init__(
        self,
        settings: Settings,
        reader: RealtimeReader,
        holder: ModelHolder,
        snapshots: RealtimeSnapshots,
        metrics: ServingMetrics,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.holder = holder
        self.snapshots = snapshots
        self.metrics = metrics

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
        loaded = self.holder.current  # grabbed once: a concurrent swap does not affect this request
        version = loaded.version if loaded is not None else None
        # Taken before the unavailable set is read below: a result stored under this tag was
        # filtered with this catalog state or a newer one.
        tag = cache_tag(version, self.snapshots.catalog_tag)
        request_id = current_request_id()
        serving = self.settings.serving
        params = q.cache_params() if serving.cache_ttl_s > 0 else None
        snap: UserSnapshot | None
        try:
            snap = await self.reader.user_snapshot(q.user_id, params, serving.recent_events_for_session)
        except RealtimeUnavailable:
            snap = None
            # Answers served from the snapshots are stale from now on too, not only after their
            # own next refresh fails.
            self.snapshots.mark_unhealthy()
        if snap is not None and snap.cached is not None:
            cached_items = cached_items_for(snap.cached, tag)
            if cached_items is not None and not self.holder.is_erased(q.user_id):
                self.metrics.cache_hits.inc()
                return {
                    "user_id": q.user_id,
                    "items": orjson.Fragment(cached_items),
                    "model_version": version,
                    "degraded": False,
                    "request_id": request_id,
                }
        self.metrics.cache_misses.inc()

        degraded = snap is None
        allowed: frozenset[str] | None = None
        if q.category is not None:
            allowed = await self.snapshots.category(q.category)
            if allowed is None:
                degraded = True
                allowed = frozenset()
        filters = Filters(
            exclude=q.exclude,
            purchased=frozenset() if q.include_purchased or snap is None else snap.purchased,
            unavailable=await self.snapshots.unavailable(),
            allowed=allowed,
        )
        popular = await self._popular_sources(loaded, q.category, q.k + filters.n_blocked_hint)
        ranked = recommend(
            loaded.model if loaded is not None else None,
            user_id=q.user_id,
            k=q.k,
            recent=snap.recent if snap is not None else (),
            filters=filters,
            popular=popular,
            session_weight=serving.session_weight,
            weights=self.settings.model.weights,
            erased=self.holder.is_erased(q.user_id),
        )
        self._count(loaded, ranked, degraded)
        # Serialized once: the same bytes go into the cache entry and, as a fragment, the response.
        items_json = orjson.dumps([r.to_json() for r in ranked])
        if params is not None and snap is not None and not degraded:
            await self._store(q.user_id, params, snap.marker, cache_payload(tag, items_json))
        return {
            "user_id": q.user_id,
            "items": orjson.Fragment(items_json),
            "model_version": version,
            "degraded": degraded,
            "request_id": request_id,
        }

    def _count(self, loaded: LoadedModel | None, ranked: list[Ranked], degraded: bool) -> None:
        if degraded:
            self.metrics.degraded.inc()
            self.metrics.fallbacks.labels(kind="redis_unavailable").inc()
        if loaded is None:
            self.metrics.fallbacks.labels(kind="no_model").inc()
        elif ranked and all(r.kind == "popular" for r in ranked):
            self.metrics.fallbacks.labels(kind="popular").inc()
        elif ranked and ranked[-1].kind == "popular":
            self.metrics.fallbacks.labels(kind="top_up").inc()

    async def similar(self, item_id: str, k: int) -> dict[str, Any]:
        loaded = self.holder.current
        if loaded is None:
            raise ApiError(503, "no_model", "no model is loaded yet; similar items need a trained model")
        if not loaded.model.knows_item(item_id):
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not known to model {loaded.version}")
        unavailable = await self.snapshots.unavailable()
        found = loaded.model.similar(item_id, min(loaded.model.n_items, k + min(len(unavailable), 500) + 1))
        items = [
            Ranked(iid, score, "similar_to", item_id).to_json()
            for iid, score in found
            if iid != item_id and iid not in unavailable
        ][:k]
        return {
            "item_id": item_id,
            "items": items,
            "model_version": loaded.version,
            "request_id": current_request_id(),
        }

    async def popular(self, k: int, window: str, category: str | None) -> dict[str, Any]:
        loaded = self.holder.current
        items = await self.snapshots.popular(window, category)
        degraded = items is None or not self.snapshots.healthy
        sources: list[Sequence[tuple[str, float]]] = [items or []]
        if len(items or []) < k and category is None and loaded is not None:
            # A fresh deployment (or Redis never reached): the training data's popularity fills in.
            self.metrics.fallbacks.labels(kind="model_popularity").inc()
            sources.append(loaded.model.popular_items(k + 50))
        if degraded:
            self.metrics.degraded.inc()
            self.metrics.fallbacks.labels(kind="redis_unavailable").inc()
        unavailable = await self.snapshots.unavailable()
        ranked = popular_only(k, Filters(unavailable=unavailable), sources)
        return {
            "items": [r.to_json() for r in ranked],
            "window": window,
            "category": category,
            "model_version": loaded.version if loaded is not None else None,
            "degraded": degraded,
            "request_id": current_request_id(),
        }


WINDOW_DEFAULT = ALL_TIME
