"""Pure ranking of the discovery lists: trending (``core.trending`` scores) and new arrivals.

No IO: the caller hands over what it read (scores, the newest items, the model and the shopper's vector).

New arrivals are ordered by first-seen time. With a shopper whose long-term embedding the model has,
the positions of that list held by items the model also has an embedding for are refilled with the
embedded items of the newest ``pool`` the shopper scores highest; the others keep their places by
recency. A brand-new item has no collaborative embedding until a retrain sees it interacted with;
with cold start on, serving's model embeds it from its catalog document (``serving.cold_start``), so it
is placed like any embedded item. One with no embedding at all (a model without a content map, cold
start off, or an item past the cold-start cap) says so in its reason rather than pretend to be
personalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from core.trending import TrendScore
from serving.model_port import ServingModel
from serving.ranking import Filters, Ranked

NO_CONTENT_MODEL = (
    "no embedding for this item yet: it keeps its place by recency (the model has no content map to "
    "embed it from its catalog data, or it is past the cold-start cap)"
)


def trending_list(
    scores: Sequence[TrendScore], k: int, filters: Filters, windows: tuple[str, str]
) -> list[Ranked]:
    """The first ``k`` of ``scores`` (already in growth order) that pass ``filters``."""
    out: list[Ranked] = []
    short, long = windows
    for t in scores:
        if filters.blocks(t.item_id):
            continue
        detail = {
            "growth": round(t.growth, 3),
            "short_window": short,
            "short_per_hour": round(t.short_per_h, 3),
            "long_window": long,
            "long_per_hour": round(t.long_per_h, 3),
        }
        out.append(Ranked(t.item_id, t.growth, "trending", detail=detail))
        if len(out) >= k:
            break
    return out


def _added_at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _by_recency(item_id: str, added_ms: int, note: str | None) -> Ranked:
    detail: dict[str, object] = {"added_at": _added_at(added_ms), "basis": "recency"}
    if note is not None:
        detail["note"] = note
    return Ranked(item_id, added_ms / 1000.0, "new", detail=detail)


def new_list(
    newest: Sequence[tuple[str, int]],
    k: int,
    filters: Filters,
    *,
    model: ServingModel | None = None,
    user_vector: np.ndarray | None = None,
    pool: int = 200,
) -> list[Ranked]:
    """``newest``: (item, added ms), newest first. Without ``model`` and ``user_vector`` the list is
    by recency; with them, see the module docstring."""
    candidates = [(i, t) for i, t in newest if not filters.blocks(i)]
    head = candidates[:k]
    if model is None or user_vector is None:
        return [_by_recency(i, t, None) for i, t in head]
    embedded = [(i, t) for i, t in candidates[: max(pool, k)] if model.knows_item(i)]
    slots = [pos for pos, (i, _t) in enumerate(head) if model.knows_item(i)]
    out = [_by_recency(i, t, NO_CONTENT_MODEL) for i, t in head]
    if not slots:
        return out
    query = np.asarray(user_vector, dtype=np.float32).ravel()
    scores = model.item_vectors([i for i, _t in embedded]) @ query
    # Best score first; ties by recency (the input order), so the result is deterministic.
    order = sorted(range(len(embedded)), key=lambda n: (-float(scores[n]), n))[: len(slots)]
    for pos, n in zip(slots, order, strict=True):
        item_id, added_ms = embedded[n]
        detail = {"added_at": _added_at(added_ms), "basis": "embedding"}
        out[pos] = Ranked(item_id, float(scores[n]), "new", detail=detail)
    return out
