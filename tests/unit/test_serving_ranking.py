"""Pure ranking: session effect, filters, top-up, reasons."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.recent import RecentEvent
from core.settings import EventWeights
from serving.ranking import Filters, _blend, recommend, session_pairs
from tests.unit.test_serving_helpers import CATEGORIES, PER_CATEGORY, category_of, model_files, tiny_loader

RECORD = type("R", (), {"version": 7, "metrics": {}, "trained_at": None})()
MODEL = tiny_loader(model_files(), RECORD).model
ALL_ITEMS = [f"{c}-{j}" for c in CATEGORIES for j in range(PER_CATEGORY)]
POPULAR = [[(iid, float(100 - n)) for n, iid in enumerate(ALL_ITEMS)]]


def events(*items: str, kind: str = "click") -> tuple[RecentEvent, ...]:
    # newest first
    return tuple(RecentEvent(f"e{n}", iid, kind, 1_000_000 - n) for n, iid in enumerate(items))


def rank(user: str = "alice", k: int = 5, recent: tuple[RecentEvent, ...] = (), **kw: Any) -> list[Any]:
    return recommend(
        MODEL,
        user_id=user,
        k=k,
        recent=recent,
        filters=kw.pop("filters", Filters()),
        popular=kw.pop("popular", POPULAR),
        session_weight=kw.pop("session_weight", 0.5),
        weights=EventWeights(),
        **kw,
    )


def test_session_pairs_weight_recency_and_type() -> None:
    pairs = dict(session_pairs((*events("a", "b"), RecentEvent("x", "c", "purchase", 1)), EventWeights()))
    assert pairs["a"] > pairs["b"]  # newer counts more
    assert pairs["c"] > pairs["b"]  # a purchase outweighs a click despite being older


def test_known_user_without_session_gets_personalized_items_of_their_category() -> None:
    out = rank("alice")
    assert [category_of(r.item_id) for r in out] == ["books"] * 5
    assert {r.kind for r in out} == {"personalized"}


def test_session_shifts_recommendations_toward_clicked_category() -> None:
    before = rank("alice", k=10)
    after = rank("alice", k=10, recent=events("games-1", "games-2", "games-3"), session_weight=0.7)
    share = lambda out, cat: sum(category_of(r.item_id) == cat for r in out) / len(out)  # noqa: E731
    assert share(before, "games") == 0.0
    assert share(after, "games") >= 0.5
    session_reasons = [r for r in after if category_of(r.item_id) == "games"]
    assert all(r.kind in ("session", "similar_to") for r in session_reasons)
    assert any(
        r.kind == "similar_to" and r.because in {"games-1", "games-2", "games-3"} for r in session_reasons
    )


def test_unknown_user_with_session_gets_session_results_at_once() -> None:
    out = rank("stranger", recent=events("music-4"))
    assert [category_of(r.item_id) for r in out] == ["music"] * 5
    assert all(r.kind in ("session", "similar_to") for r in out)


def test_unknown_user_without_anything_gets_popular() -> None:
    out = rank("stranger", k=3)
    assert [(r.item_id, r.kind) for r in out] == [(i, "popular") for i in ALL_ITEMS[:3]]


def test_no_model_gives_popular() -> None:
    out = recommend(
        None,
        user_id="alice",
        k=2,
        recent=(),
        filters=Filters(),
        popular=POPULAR,
        session_weight=0.5,
        weights=EventWeights(),
    )
    assert [r.kind for r in out] == ["popular", "popular"]


def test_erased_user_long_term_vector_is_not_used() -> None:
    out = rank("alice", erased=True)
    assert all(r.kind == "popular" for r in out)


def test_filters_exclude_purchased_unavailable() -> None:
    top = [r.item_id for r in rank("alice", k=3)]
    filters = Filters(
        exclude=frozenset({top[0]}), purchased=frozenset({top[1]}), unavailable=frozenset({top[2]})
    )
    out = [r.item_id for r in rank("alice", k=5, filters=filters)]
    assert not set(out) & set(top)
    assert len(out) == 5


def test_category_filter_keeps_only_that_category() -> None:
    allowed = frozenset(f"music-{j}" for j in range(PER_CATEGORY))
    out = rank("alice", k=4, filters=Filters(allowed=allowed))
    assert len(out) == 4 and all(category_of(r.item_id) == "music" for r in out)


def test_top_up_to_k_from_popularity_when_filters_remove_candidates() -> None:
    books = frozenset(f"books-{j}" for j in range(PER_CATEGORY))
    out = rank("alice", k=15, filters=Filters(exclude=books - {"books-0"}))
    assert len(out) == 15
    assert len({r.item_id for r in out}) == 15
    assert out[0].kind == "personalized" and out[-1].kind in {"personalized", "popular"}
    assert not {r.item_id for r in out} & (books - {"books-0"})


def test_top_up_stops_when_catalog_is_exhausted() -> None:
    allowed = frozenset({"tools-1", "tools-2"})
    out = rank("alice", k=10, filters=Filters(allowed=allowed))
    assert sorted(r.item_id for r in out) == ["tools-1", "tools-2"]


def test_the_session_moves_the_query_by_its_share_however_small_the_vectors() -> None:
    """A strongly regularised model has tiny collaborative vectors next to the bias dimension's 1;
    the session's share of the query must still be its configured share, not its raw magnitude's."""
    long_raw = np.array([1e-3, 0.0, 1.0], dtype=np.float32)  # long history, direction x
    session_raw = np.array([0.0, 1e-4, 1.0], dtype=np.float32)  # short session, direction y, 10x smaller
    query = _blend(long_raw, session_raw, 0.5, 0.5)
    assert query is not None and abs(float(query @ query) - 1.0) < 1e-5
    x, y = float(query[0]), float(query[1])
    assert x > 0 and y > 0 and abs(x - y) < 1e-6 * max(x, y) + 1e-9  # equal shares: the diagonal
    # the bias keeps its weight relative to the (mixed) collaborative magnitude
    assert abs(float(query[2]) / float(np.hypot(x, y)) - 1.0 / (0.5 * 1e-3 + 0.5 * 1e-4)) < 1.0


def test_blend_falls_back_when_a_part_has_no_collaborative_signal() -> None:
    only_bias = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    session_raw = np.array([0.0, 2.0, 1.0], dtype=np.float32)
    query = _blend(only_bias, session_raw, 0.3, 0.7)
    assert query is not None and query[1] > 0 and abs(float(query @ query) - 1.0) < 1e-5
