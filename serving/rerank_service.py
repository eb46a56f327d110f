"""POST /v1/users/{user_id}/rerank: the read side of re-ranking a given list (serving.rerank ranks).

One Redis read (the shopper's recent events, for the session part of the query), the model of the
shopper's arm (experiments may split the "rerank" surface like any other), the popularity snapshots
for a shopper the model cannot place, and one impression with surface "rerank" for attribution.
Nothing is cached: the candidates differ per page, so a cache entry would rarely be hit again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from core.log_context import current_request_id
from core.recent import RecentEvent
from serving.experiments import Arm
from serving.impressions import Shown, offer
from serving.merchandising import Merch
from serving.model_port import LoadedModel
from serving.popularity import TOP_UP_WINDOWS
from serving.rerank import rerank
from serving.service import ReadService
from storage.errors import RealtimeUnavailable
from storage.realtime_reader import now_ms

UNKNOWN_REASON = {"kind": "unknown"}
# How deep into the model's own popularity list a shopper without a vector is placed.
MODEL_POPULARITY_DEPTH = 1000


@dataclass(frozen=True)
class RerankQuery:
    user_id: str
    item_ids: list[str]  # distinct, each a valid id (the route checks both)
    drop_unknown: bool = False
    # The request's item filters (candidates failing them, or blocked by a rule, are left out).
    merch: Merch | None = None


async def rerank_for(read: ReadService, q: RerankQuery) -> dict[str, Any]:
    arm = read.experiments.choose("rerank", q.user_id) if read.experiments else Arm(read.holder.current)
    loaded = arm.loaded
    merch = read.merch(q.merch)
    candidates = q.item_ids
    if merch.predicate is not None:
        candidates = [c for c in candidates if not merch.blocks(c)]
    serving = read.settings.serving
    degraded = False
    recent: Sequence[RecentEvent] = ()
    try:
        snap = await read.reader.user_snapshot(q.user_id, None, serving.recent_events_for_session)
        recent = snap.recent[: serving.recent_events_for_session]
    except RealtimeUnavailable:
        # The model still ranks by the long-term vector; only the session part is missing.
        degraded = True
        read.snapshots.mark_unhealthy()
        read.metrics.degraded.inc()
    found = [await read.snapshots.popular(window, None) for window in TOP_UP_WINDOWS]
    result = rerank(
        loaded.model if loaded is not None else None,
        user_id=q.user_id,
        candidates=candidates,
        recent=recent,
        popular=_sources(found, loaded),
        session_weight=serving.session_weight if arm.session_weight is None else arm.session_weight,
        weights=read.settings.model.weights,
        erased=read.holder.is_erased(q.user_id),
    )
    # The whole list is "the top k" here: rules reorder it; a pin applies to a candidate only.
    ranked_ids = {r.item_id for r in result.ranked}
    arranged = merch.finish(result.ranked, len(result.ranked), lambda i: i not in ranked_ids, keep_rest=True)
    items: list[dict[str, Any]] = [r.to_json() for r in arranged]
    if not q.drop_unknown:
        items += [{"item_id": iid, "score": None, "reason": UNKNOWN_REASON} for iid in result.unknown]
    items_json = orjson.dumps(items)
    request_id = current_request_id()
    version = loaded.version if loaded is not None else None
    shown = Shown(
        request_id, "rerank", q.user_id, version, items_json, now_ms(), arm.experiment_id, arm.variant
    )
    offer(read.impression_log, shown)
    return {
        "user_id": q.user_id,
        "items": orjson.Fragment(items_json),
        "unknown_item_ids": result.unknown,
        "unknown_dropped": q.drop_unknown and bool(result.unknown),
        "model_version": version,
        "degraded": degraded,
        "request_id": request_id,
        **arm.fields(),
    }


def _sources(
    found: list[list[tuple[str, float]] | None], loaded: LoadedModel | None
) -> Iterator[Sequence[tuple[str, float]]]:
    """The live popularity windows, then (built only when reached) the model's own popularity."""
    yield from (items for items in found if items)
    if loaded is not None:
        yield loaded.model.popular_items(MODEL_POPULARITY_DEPTH)
