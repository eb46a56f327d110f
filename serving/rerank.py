"""Pure re-ranking of a list the storefront already has (a category page, search results).

The shopper's query vector is the one recommendations use (``ranking.shopper_query``: long-term
vector blended with the session fold-in), and each candidate the model knows is scored against it
and explained the same way. Nothing is added and nothing is filtered: the page decided what to show,
rerank only orders it. Candidates the model does not know (new items, ids of another catalog) cannot
be scored; they keep their given order after the ranked ones, so an unknown id is never an error.

A shopper without a query vector (new, erased, or no model loaded) gets the candidates by popularity
(the same windows recommendations top up from), then the ones no popularity list holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.impressions import MAX_IMPRESSION_ITEMS
from core.recent import RecentEvent
from core.settings import EventWeights
from serving.model_port import ServingModel
from serving.ranking import Ranked, explain, shopper_query

# What one impression holds: the whole answered list is logged (every position can be attributed).
MAX_CANDIDATES = MAX_IMPRESSION_ITEMS


@dataclass(frozen=True)
class Reranked:
    ranked: list[Ranked]
    # Not scored (the model does not know them, and in a popularity ordering no list holds them);
    # in the given order, meant to follow ``ranked``.
    unknown: list[str]


def distinct(candidates: Iterable[str]) -> list[str]:
    """Each id once, at its first place (a page that lists an item twice gets it ranked once)."""
    return list(dict.fromkeys(candidates))


def rerank(
    model: ServingModel | None,
    *,
    user_id: str,
    candidates: Sequence[str],
    recent: Sequence[RecentEvent],
    popular: Iterable[Sequence[tuple[str, float]]],
    session_weight: float,
    weights: EventWeights,
    erased: bool = False,
) -> Reranked:
    """``candidates`` ordered for the shopper (they must be distinct: see ``distinct``)."""
    if model is not None:
        known = [c for c in candidates if model.knows_item(c)]
        q = (
            shopper_query(
                model,
                user_id=user_id,
                recent=recent,
                session_weight=session_weight,
                weights=weights,
                erased=erased,
            )
            if known
            else None
        )
        if q is not None:
            scores = (model.item_vectors(known) @ q.query).tolist()
            # Stable: equal scores keep the page's order.
            order = sorted(range(len(known)), key=lambda i: -scores[i])
            ranked = explain(model, [(known[i], float(scores[i])) for i in order], q)
            taken = set(known)
            return Reranked(ranked, [c for c in candidates if c not in taken])
    return by_popularity(model, candidates, popular)


def by_popularity(
    model: ServingModel | None, candidates: Sequence[str], popular: Iterable[Sequence[tuple[str, float]]]
) -> Reranked:
    """Candidates in the popularity lists first (earlier list first, then by rank in it); then the
    ones the model knows, with score 0, in the given order; the rest are unknown."""
    wanted = set(candidates)
    found: dict[str, tuple[int, int, float]] = {}
    for source_no, source in enumerate(popular):
        for rank, (item_id, score) in enumerate(source):
            if item_id in wanted and item_id not in found:
                found[item_id] = (source_no, rank, float(score))
        if len(found) == len(wanted):
            break  # every candidate placed: later (possibly lazily built) lists are not needed
    ordered = sorted(found, key=lambda iid: found[iid][:2])
    ranked = [Ranked(iid, found[iid][2], "popular") for iid in ordered]
    unknown: list[str] = []
    for c in candidates:
        if c in found:
            continue
        if model is not None and model.knows_item(c):
            ranked.append(Ranked(c, 0.0, "popular"))
        else:
            unknown.append(c)
    return Reranked(ranked, unknown)
