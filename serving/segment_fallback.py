"""Segment popularity for shoppers without history (issue 13, shopper attributes).

When the model has nothing personal for a shopper (no long-term vector, no known recent item: every
item of the ranked list is a ``popular`` fill) and the loaded artifact says its per-segment lists beat
global popularity on validation (``model.segment_popularity``), the shopper's segment (their stored
attribute named by the artifact) picks the list; global popularity tops it up. Otherwise the list is
left as it was. The attribute read costs one MongoDB lookup, made only for such shoppers; when it
fails the global list is served (attributes are an improvement, never a dependency).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from core.shoppers import segment_key
from model.segment_popularity import SegmentPopularity
from serving.model_port import LoadedModel
from serving.ranking import Filters, Ranked
from storage.shoppers import ShopperStore

log = logging.getLogger(__name__)


def history_less(ranked: Sequence[Ranked]) -> bool:
    """The model had nothing personal: the list is popularity only (or empty)."""
    return all(r.kind == "popular" for r in ranked)


def segment_ranked(
    items: Sequence[tuple[str, float]], segment: str, fill: Sequence[Ranked], k: int, filters: Filters
) -> list[Ranked]:
    """The segment's items that pass ``filters``, then ``fill`` (already filtered) up to ``k``."""
    detail = {"segment": segment}
    out: list[Ranked] = []
    taken: set[str] = set()
    for item_id, score in items:
        if len(out) >= k:
            return out
        if item_id in taken or filters.blocks(item_id):
            continue
        out.append(Ranked(item_id, float(score), "segment_popular", detail=detail))
        taken.add(item_id)
    for r in fill:
        if len(out) >= k:
            break
        if r.item_id not in taken:
            out.append(r)
            taken.add(r.item_id)
    return out


class SegmentFallback:
    def __init__(self, store: ShopperStore) -> None:
        self.store = store

    async def segment_of(self, user_id: str, segments: SegmentPopularity) -> str | None:
        try:
            record = await run_in_threadpool(self.store.get_attributes, user_id)
        except Exception as exc:
            log.warning("event=shopper_attributes_unavailable user_id=%s error=%s", user_id, exc)
            return None
        return None if record is None else segment_key(record.attributes.get(segments.attribute))

    async def apply(
        self,
        loaded: LoadedModel | None,
        user_id: str,
        ranked: list[Ranked],
        k: int,
        filters: Filters,
        *,
        erased: bool = False,
    ) -> list[Ranked]:
        segments = loaded.segments if loaded is not None else None
        if segments is None or not segments.wins or erased or not history_less(ranked):
            return ranked
        segment = await self.segment_of(user_id, segments)
        if segment is None:
            return ranked
        items = segments.list_for(segment)
        return segment_ranked(items, segment, ranked, k, filters) if items else ranked
