"""Re-ranking a given list: the pure ordering (serving.rerank) and POST /v1/users/{user_id}/rerank."""

from __future__ import annotations

import time
from typing import Any

from core.impressions import parse_impression
from core.settings import EventWeights
from serving.impressions import Shown
from serving.ranking import Filters, recommend
from serving.rerank import MAX_CANDIDATES, distinct, rerank
from tests.unit.test_serving_api import assert_error
from tests.unit.test_serving_helpers import READ, category_of, harness
from tests.unit.test_serving_ranking import ALL_ITEMS, MODEL, POPULAR, events

PAGE = ["tools-1", "books-3", "music-2", "books-7", "games-0", "tools-8"]


def order(user: str = "alice", candidates: list[str] = PAGE, **kw: Any) -> Any:
    return rerank(
        kw.pop("model", MODEL),
        user_id=user,
        candidates=candidates,
        recent=kw.pop("recent", ()),
        popular=kw.pop("popular", POPULAR),
        session_weight=kw.pop("session_weight", 0.5),
        weights=EventWeights(),
        **kw,
    )


# ------------------------------------------------------------------ the pure ordering


def test_a_known_shopper_gets_every_candidate_ordered_by_the_model() -> None:
    result = order("alice")  # alice likes books
    ids = [r.item_id for r in result.ranked]
    assert sorted(ids) == sorted(PAGE) and result.unknown == []
    assert {category_of(i) for i in ids[:2]} == {"books"}
    assert all(r.kind == "personalized" for r in result.ranked)
    assert [r.score for r in result.ranked] == sorted((r.score for r in result.ranked), reverse=True)
    result = order("bob")  # bob likes tools
    assert {category_of(r.item_id) for r in result.ranked[:2]} == {"tools"}


def test_the_order_is_the_one_recommendations_give() -> None:
    """The same query vector and scores: re-ranking the whole catalog gives recommendations' list."""
    recent = events("games-2", "games-5")
    for user in ("alice", "bob", "newcomer"):
        recs = recommend(
            MODEL,
            user_id=user,
            k=12,
            recent=recent,
            filters=Filters(),
            popular=POPULAR,
            session_weight=0.5,
            weights=EventWeights(),
        )
        ranked = order(user, ALL_ITEMS, recent=recent).ranked[:12]
        assert [(r.item_id, r.kind, r.because) for r in ranked] == [
            (r.item_id, r.kind, r.because) for r in recs
        ]


def test_the_session_moves_the_list_and_names_its_anchor() -> None:
    result = order("newcomer", recent=events("games-4"))  # no long-term vector: the session alone
    assert result.ranked[0].item_id == "games-0"
    assert (result.ranked[0].kind, result.ranked[0].because) == ("similar_to", "games-4")


def test_unknown_ids_go_last_in_their_given_order() -> None:
    page = ["new-9", "tools-1", "other-shop-3", "books-3"]
    result = order("alice", page)
    assert [r.item_id for r in result.ranked] == ["books-3", "tools-1"]
    assert result.unknown == ["new-9", "other-shop-3"]


def test_a_shopper_without_a_vector_gets_popularity_then_the_rest() -> None:
    popular = [[("music-2", 9.0), ("tools-8", 7.0)], [("games-0", 50.0), ("music-2", 40.0)]]
    result = order("newcomer", [*PAGE, "new-1"], popular=popular)
    assert [(r.item_id, r.kind, r.score) for r in result.ranked] == [
        ("music-2", "popular", 9.0),  # the first list first, then by rank within a list
        ("tools-8", "popular", 7.0),
        ("games-0", "popular", 50.0),
        # known to the model but in no popularity list: after, in the given order
        ("tools-1", "popular", 0.0),
        ("books-3", "popular", 0.0),
        ("books-7", "popular", 0.0),
    ]
    assert result.unknown == ["new-1"]
    # An erased shopper has no long-term vector either; with no model, only popularity knows items.
    assert order("alice", erased=True, popular=popular).ranked == result.ranked
    no_model = order("alice", [*PAGE, "new-1"], model=None, popular=popular)
    assert [r.item_id for r in no_model.ranked] == ["music-2", "tools-8", "games-0"]
    assert no_model.unknown == ["tools-1", "books-3", "books-7", "new-1"]


def test_popularity_lists_after_the_last_candidate_is_placed_are_not_built() -> None:
    def sources() -> Any:
        yield [("books-3", 1.0)]
        raise AssertionError("the model's popularity list was built though every candidate was placed")

    assert [r.item_id for r in order("newcomer", ["books-3"], popular=sources()).ranked] == ["books-3"]


def test_repeated_ids_are_ranked_once_at_their_first_place() -> None:
    assert distinct(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_an_empty_list_stays_empty() -> None:
    assert order("alice", []).ranked == [] and order("newcomer", []).unknown == []


# ------------------------------------------------------------------ the endpoint


def post(h: Any, user: str, body: Any, key: str | None = READ) -> Any:
    return h.client.post(f"/v1/users/{user}/rerank", json=body, headers={"X-API-Key": key} if key else {})


def test_rerank_answers_every_candidate_ordered_with_reasons_and_logs_an_impression() -> None:
    with harness() as h:
        resp = post(h, "alice", {"item_ids": ["new-1", *PAGE, "books-3"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {
            "user_id",
            "items",
            "unknown_item_ids",
            "unknown_dropped",
            "model_version",
            "degraded",
            "request_id",
            "experiment_id",
            "variant",
        }
        ids = [i["item_id"] for i in body["items"]]
        assert sorted(ids) == sorted(["new-1", *PAGE]) and ids[-1] == "new-1"
        assert {category_of(i) for i in ids[:2]} == {"books"}
        assert body["items"][0]["reason"] == {"kind": "personalized"}
        assert body["items"][-1] == {"item_id": "new-1", "score": None, "reason": {"kind": "unknown"}}
        assert body["unknown_item_ids"] == ["new-1"] and body["unknown_dropped"] is False
        assert body["model_version"] == "1" and body["degraded"] is False

        (imp,) = [i for i in h.impressions if i.impression_id == body["request_id"]]
        assert (imp.surface, imp.user_id, imp.model_version) == ("rerank", "alice", "1")
        assert [(s.item_id, s.position) for s in imp.items] == [(i, n) for n, i in enumerate(ids)]
        assert imp.items[-1].reason == "unknown" and imp.items[-1].score is None


def test_drop_unknown_leaves_them_out_and_says_so() -> None:
    with harness() as h:
        body = post(h, "alice", {"item_ids": ["new-1", "books-3"], "drop_unknown": True}).json()
        assert [i["item_id"] for i in body["items"]] == ["books-3"]
        assert body["unknown_item_ids"] == ["new-1"] and body["unknown_dropped"] is True
        body = post(h, "alice", {"item_ids": ["only-unknown"], "drop_unknown": True}).json()
        assert body["items"] == [] and body["unknown_dropped"] is True


def test_the_session_reaches_rerank_through_redis() -> None:
    with harness() as h:
        h.realtime.record("newcomer", "games-4")
        body = post(h, "newcomer", {"item_ids": ["tools-1", "games-0"]}).json()
        assert body["items"][0]["item_id"] == "games-0"
        assert body["items"][0]["reason"] == {"kind": "similar_to", "item_id": "games-4"}
        h.realtime.up = False  # Redis down: the long-term vector still ranks, flagged degraded
        body = post(h, "alice", {"item_ids": ["tools-1", "books-3"]}).json()
        assert [i["item_id"] for i in body["items"]] == ["books-3", "tools-1"] and body["degraded"] is True


def test_a_new_shopper_gets_live_popularity() -> None:
    with harness() as h:
        h.realtime.record("x", "tools-8", weight=5)
        time.sleep(0.2)  # snapshot refresh
        body = post(h, "newcomer", {"item_ids": ["books-0", "tools-8"]}).json()
        assert [(i["item_id"], i["reason"]["kind"]) for i in body["items"]] == [
            ("tools-8", "popular"),
            ("books-0", "popular"),  # the model's own popularity list holds it
        ]


def test_bad_requests_get_a_reason_never_a_crash() -> None:
    with harness() as h:
        too_many = post(h, "alice", {"item_ids": [f"i{n}" for n in range(MAX_CANDIDATES + 1)]})
        assert_error(too_many, 422, "invalid_request")
        assert "500" in too_many.json()["error"]["message"]
        assert post(h, "alice", {"item_ids": [f"i{n}" for n in range(MAX_CANDIDATES)]}).status_code == 200
        for bad, words in (
            (["ok", "  "], "item_ids.1: must not be blank"),
            (["a\nb"], "item_ids.0: contains the control character"),
            (["ok", 7], "item_ids.1"),
            ([""], "item_ids.0"),
            (["x" * 257], "item_ids.0"),
        ):
            resp = post(h, "alice", {"item_ids": bad})
            assert_error(resp, 422, "invalid_request")
            assert words in resp.json()["error"]["message"], resp.json()
        assert_error(post(h, "alice", {"item_ids": "books-1"}), 422)
        assert_error(post(h, "alice", {"items": ["books-1"]}), 422)
        assert_error(post(h, "alice", {"item_ids": [], "drop_unknown": "yes"}), 422)
        assert_error(post(h, "alice", {"item_ids": ["books-1"]}, key=None), 401, "unauthorized")
        assert post(h, "alice", {"item_ids": []}).json()["items"] == []


def test_the_rerank_impression_is_one_the_consumer_accepts() -> None:
    items = b'[{"item_id":"a","score":0.5,"reason":{"kind":"personalized"}},' + (
        b'{"item_id":"z","score":null,"reason":{"kind":"unknown"}}]'
    )
    key, value = Shown("req-1", "rerank", "u1", "3", items, 1_700_000_000_000).encode()
    imp = parse_impression(value)
    assert not hasattr(imp, "code"), imp
    assert key == b"u1" and imp.surface == "rerank"  # type: ignore[union-attr]
    assert [(s.item_id, s.reason, s.score) for s in imp.items] == [  # type: ignore[union-attr]
        ("a", "personalized", 0.5),
        ("z", "unknown", None),
    ]
