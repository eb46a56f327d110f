"""Pure ranking: long-term user vector + session fold-in -> candidates -> filters -> popularity top-up.

No IO here: the caller hands over the user's recent events, purchases and the popularity lists it
already fetched (one Redis round trip), and this module does one vector search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.event_weights import event_weight
from core.recent import RecentEvent
from core.settings import EventWeights
from serving.model_port import ServingModel

# content: a cold item, or a neighbour of one, placed by catalog metadata (serving.cold_start).
ReasonKind = Literal[
    "personalized",
    "session",
    "similar_to",
    "popular",
    "segment_popular",
    "trending",
    "new",
    "pinned",
    "content",
]
# Each older event counts this much less than the next newer one (position-based, so replayed
# histories with old timestamps still form a session).
RECENCY_DECAY = 0.8
# Fetch this many extra candidates per requested item before filtering.
OVERFETCH = 3
MAX_FETCH = 2000


@dataclass(frozen=True, slots=True)
class Ranked:
    item_id: str
    score: float
    kind: ReasonKind
    because: str | None = None
    # Figures the reason shows (trending rates, a new item's added time); None on the hot paths.
    detail: Mapping[str, object] | None = None
    # Merchandising rules that moved or placed this item: (rule_id, kind) (core.merch_rules).
    rules: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        if self.detail is not None:
            reason: dict[str, object] = {"kind": self.kind, **self.detail}
        elif self.because is None:
            reason = _REASONS[self.kind]
        else:
            reason = {"kind": self.kind, "item_id": self.because}
        if self.rules:
            reason = {**reason, "rules": [{"rule_id": rid, "kind": kind} for rid, kind in self.rules]}
        return {"item_id": self.item_id, "score": round(self.score, 6), "reason": reason}


# Shared (read-only) reason objects: one per kind instead of one per returned item.
_REASONS: dict[str, dict[str, object]] = {
    kind: {"kind": kind}
    for kind in ("personalized", "session", "similar_to", "popular", "trending", "new", "pinned")
}


@dataclass(frozen=True)
class Filters:
    exclude: frozenset[str] = frozenset()
    purchased: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()
    # None: no category filter; otherwise only these items may be returned.
    allowed: frozenset[str] | None = None
    # Request filters and block rules (serving.merchandising); None: none apply.
    extra: Callable[[str], bool] | None = None
    # The estimated share of the catalog ``extra`` lets through (widens the candidate search).
    extra_share: float = 1.0

    def blocks(self, item_id: str) -> bool:
        return (
            item_id in self.exclude
            or item_id in self.purchased
            or item_id in self.unavailable
            or (self.allowed is not None and item_id not in self.allowed)
            or (self.extra is not None and self.extra(item_id))
        )

    @property
    def n_blocked_hint(self) -> int:
        return len(self.exclude) + len(self.purchased) + min(len(self.unavailable), MAX_FETCH)


def session_pairs(recent: Sequence[RecentEvent], weights: EventWeights) -> list[tuple[str, float]]:
    """(item, weight) per distinct item in the newest-first ``recent`` list: each event's
    ``core.event_weights.event_weight`` (a rating scales a ``rate`` event), decayed by its position."""
    totals: dict[str, float] = {}
    for pos, ev in enumerate(recent):
        totals[ev.item_id] = (
            totals.get(ev.item_id, 0.0) + event_weight(ev.event_type, ev.value, weights) * RECENCY_DECAY**pos
        )
    return [(item, w) for item, w in totals.items() if w > 0]


def _blend(long_raw: np.ndarray, session_raw: np.ndarray, w_long: float, w_sess: float) -> np.ndarray | None:
    """The unit query mixing the long-term and session directions in the given shares.

    Both vectors end in the bias dimension's constant 1. Normalising each whole vector before mixing
    (as this once did) lets that constant dominate when the collaborative part is small (a strongly
    regularised model): the mix then follows raw magnitudes and a short session barely moves a long
    history's vector, so new clicks did not change the list. So the collaborative parts are mixed as
    directions, given the mixed magnitude, and the constant is put back: the bias keeps the weight
    relative to the collaborative score that each vector had on its own."""
    lv = np.asarray(long_raw, dtype=np.float32).ravel()
    sv = np.asarray(session_raw, dtype=np.float32).ravel()
    ln, sn = float(np.linalg.norm(lv[:-1])), float(np.linalg.norm(sv[:-1]))
    if not (math.isfinite(ln) and math.isfinite(sn)) or ln == 0.0 or sn == 0.0:
        # a part with no collaborative signal (only the bias): mix the whole vectors as before
        lu, su = _unit(lv), _unit(sv)
        if lu is None or su is None:
            return lu if su is None else su
        return _unit(np.float32(w_long) * lu + np.float32(w_sess) * su)
    direction = _unit(w_long * lv[:-1] / np.float32(ln) + w_sess * sv[:-1] / np.float32(sn))
    if direction is None:  # opposite directions cancelled exactly
        return None
    mixed = np.empty_like(lv)
    mixed[:-1] = direction * np.float32(w_long * ln + w_sess * sn)
    mixed[-1] = np.float32(w_long * lv[-1] + w_sess * sv[-1])
    return _unit(mixed)


def _unit(vec: np.ndarray | None) -> np.ndarray | None:
    if vec is None:
        return None
    vec = np.asarray(vec, dtype=np.float32).ravel()
    # math on a Python float: several times cheaper than np.linalg.norm for one short vector
    squared = float(vec @ vec)
    if not math.isfinite(squared) or squared == 0.0:
        return None
    return vec / np.float32(math.sqrt(squared))


def top_up(
    ranked: list[Ranked], k: int, filters: Filters, sources: Iterable[Sequence[tuple[str, float]]]
) -> list[Ranked]:
    """Fill ``ranked`` up to ``k`` with popular items that pass the filters and are not there yet."""
    if len(ranked) >= k:
        return ranked[:k]
    taken = {r.item_id for r in ranked}
    out = list(ranked)
    for source in sources:
        for item_id, score in source:
            if item_id in taken or filters.blocks(item_id):
                continue
            out.append(Ranked(item_id, float(score), "popular"))
            taken.add(item_id)
            if len(out) >= k:
                return out
    return out


def popular_only(k: int, filters: Filters, sources: Iterable[Sequence[tuple[str, float]]]) -> list[Ranked]:
    return top_up([], k, filters, sources)


@dataclass(frozen=True)
class ShopperQuery:
    """The shopper's query vector and its parts (what ``explain`` needs to give reasons)."""

    query: np.ndarray
    long_term: np.ndarray | None
    session: np.ndarray | None
    w_long: float
    w_sess: float
    session_items: list[str]


def shopper_query(
    model: ServingModel,
    *,
    user_id: str,
    recent: Sequence[RecentEvent],
    session_weight: float,
    weights: EventWeights,
    erased: bool = False,
) -> ShopperQuery | None:
    """Long-term user vector blended with the session fold-in; None when neither exists (a new
    shopper with no known recent item, or an erased one): the caller falls back to popularity."""
    raw_long = None if erased else model.user_vector(user_id)
    known_recent = [ev for ev in recent if model.knows_item(ev.item_id)]
    pairs = session_pairs(known_recent, weights)
    # pairs are newest first; the model folds a history in oldest first, as it was trained.
    raw_session = model.fold_in(pairs[::-1]) if pairs else None
    long_term, session = _unit(raw_long), _unit(raw_session)
    if long_term is None and session is None:
        return None

    if long_term is not None and session is not None:
        w_long, w_sess = 1.0 - session_weight, session_weight
        assert raw_long is not None and raw_session is not None
        query = _blend(raw_long, raw_session, w_long, w_sess)
    else:
        w_long, w_sess = (1.0, 0.0) if long_term is not None else (0.0, 1.0)
        query = long_term if long_term is not None else session
    if query is None:  # the two vectors cancelled out exactly
        query = session if session is not None else long_term
    assert query is not None
    return ShopperQuery(query, long_term, session, w_long, w_sess, [p[0] for p in pairs])


def recommend(
    model: ServingModel | None,
    *,
    user_id: str,
    k: int,
    recent: Sequence[RecentEvent],
    filters: Filters,
    popular: Iterable[Sequence[tuple[str, float]]],
    session_weight: float,
    weights: EventWeights,
    erased: bool = False,
) -> list[Ranked]:
    if model is None:
        return popular_only(k, filters, popular)
    q = shopper_query(
        model, user_id=user_id, recent=recent, session_weight=session_weight, weights=weights, erased=erased
    )
    if q is None:
        return popular_only(k, filters, popular)

    fetch = min(model.n_items, MAX_FETCH, OVERFETCH * k + filters.n_blocked_hint)
    if filters.allowed is not None and model.n_items:
        # Only a fraction of the catalog can pass a category filter: widen the net accordingly.
        share = max(len(filters.allowed), 1) / model.n_items
        fetch = min(model.n_items, MAX_FETCH, max(fetch, int(OVERFETCH * k / share)))
    if filters.extra is not None and filters.extra_share < 1.0:
        # Property filters keep only part of the catalog too (estimated on a sample of it).
        fetch = min(model.n_items, MAX_FETCH, max(fetch, int(OVERFETCH * k / max(filters.extra_share, 1e-3))))
    kept = _first_allowed(model.recommend(q.query, max(fetch, 1)), filters, k)
    ranked = explain(model, kept, q)
    return top_up(ranked, k, filters, popular)


def _first_allowed(candidates: list[tuple[str, float]], filters: Filters, k: int) -> list[tuple[str, float]]:
    kept: list[tuple[str, float]] = []
    for candidate in candidates:
        if not filters.blocks(candidate[0]):
            kept.append(candidate)
            if len(kept) == k:
                break
    return kept


def explain(model: ServingModel, kept: list[tuple[str, float]], q: ShopperQuery) -> list[Ranked]:
    """A reason per (item, score): the long-term or the session part of the query scored it higher;
    for the session part, the recent item it is most like when that is another, related item."""
    long_term, session, w_long, w_sess, session_items = (
        q.long_term,
        q.session,
        q.w_long,
        q.w_sess,
        q.session_items,
    )
    if not kept:
        return []
    if session is None:
        return [Ranked(iid, float(s), "personalized") for iid, s in kept]
    vecs = model.item_vectors([iid for iid, _ in kept])
    sess_part = (w_sess * (vecs @ session)).tolist()
    long_part = (w_long * (vecs @ long_term)).tolist() if long_term is not None else [-math.inf] * len(kept)
    recent_vecs = model.item_vectors(session_items)
    sims = vecs @ recent_vecs.T  # (candidates, recent items)
    best = np.argmax(sims, axis=1).tolist()
    best_sim = sims[np.arange(len(kept)), best].tolist()
    out: list[Ranked] = []
    for row, (iid, score) in enumerate(kept):
        if long_part[row] > sess_part[row]:
            out.append(Ranked(iid, float(score), "personalized"))
            continue
        anchor = session_items[best[row]]
        # Naming the anchor only helps when it is another item the user touched and it is related.
        if anchor != iid and best_sim[row] > 0:
            out.append(Ranked(iid, float(score), "similar_to", anchor))
        else:
            out.append(Ranked(iid, float(score), "session"))
    return out
