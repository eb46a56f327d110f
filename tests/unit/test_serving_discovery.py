"""GET /v1/trending and GET /v1/new: ranking, filters, personalisation, reasons, impressions, errors."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from serving.discovery_ranking import NO_CONTENT_MODEL, new_list
from serving.ranking import Filters
from tests.unit.test_serving_api import assert_error
from tests.unit.test_serving_helpers import harness, model_files, tiny_loader

NOW_MS = int(time.time() * 1000)


def trend_data(h: Any) -> None:
    """Short-window counts and long-window history: games-1 rises, books-0 is big but steady."""
    h.realtime.pop["1h"] = {"books-0": 40.0, "games-1": 12.0, "music-2": 8.0, "tools-3": 2.0}
    h.realtime.pop["7d"] = {"books-0": 40_000.0, "games-1": 14.0, "music-2": 9.0, "tools-3": 2.0}
    # The popularity snapshots the app refreshes in the background (TTL 0.05 s here) pick it up.
    time.sleep(0.2)


def test_trending_ranks_by_growth_with_figures_and_logs_an_impression() -> None:
    with harness() as h:
        trend_data(h)
        resp = h.get("/v1/trending", k=10)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["degraded"] is False and body["short_window"] == "1h" and body["long_window"] == "7d"
        ids = [i["item_id"] for i in body["items"]]
        # tools-3 is under the minimum count (5); books-0's rate is flat against its long history.
        assert ids == ["games-1", "music-2", "books-0"]
        reason = body["items"][0]["reason"]
        assert reason["kind"] == "trending" and reason["growth"] == round(body["items"][0]["score"], 3)
        assert reason["short_per_hour"] > reason["long_per_hour"] > 0
        assert set(reason) == {
            "kind",
            "growth",
            "short_window",
            "short_per_hour",
            "long_window",
            "long_per_hour",
        }
        (shown,) = [i for i in h.impressions if i.surface == "trending"]
        assert shown.request_id == body["request_id"] and shown.user_id is None
        assert [s.item_id for s in shown.items] == ids and shown.items[0].reason == "trending"


def test_trending_by_category_without_unavailable_items_and_k() -> None:
    with harness() as h:
        trend_data(h)
        assert [i["item_id"] for i in h.get("/v1/trending", category="music").json()["items"]] == ["music-2"]
        assert h.get("/v1/trending", category="nope").json()["items"] == []
        h.realtime.set_item("games-1", category="games", available=False)
        time.sleep(0.1)  # the snapshot TTL of the harness
        ids = [i["item_id"] for i in h.get("/v1/trending", k=1).json()["items"]]
        assert ids == ["music-2"]


def test_trending_min_count_setting_and_bad_input() -> None:
    with harness(trending={"min_count": 1.0}) as h:
        trend_data(h)
        assert "tools-3" in [i["item_id"] for i in h.get("/v1/trending").json()["items"]]
        assert_error(h.get("/v1/trending", k=0), 422)
        assert_error(h.get("/v1/trending", k=10_000), 422, "invalid_request")
        assert_error(h.get("/v1/trending", category=""), 422)


def test_trending_while_redis_is_down_serves_the_last_list_flagged_degraded() -> None:
    with harness() as h:
        trend_data(h)
        first = h.get("/v1/trending").json()
        h.realtime.up = False
        time.sleep(0.1)
        body = h.get("/v1/trending").json()
        assert body["degraded"] is True
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in first["items"]]
        # A category never read before has nothing to fall back on: empty, degraded, no error.
        body = h.get("/v1/trending", category="games").json()
        assert body["degraded"] is True and body["items"] == []


def added(h: Any) -> None:
    """Added a minute apart, newest first; fresh-x is brand new (the model has no embedding for it);
    old-1 is older than the 30 day limit."""
    for n, item in enumerate(["books-0", "fresh-x", "books-1", "tools-0", "books-2", "tools-1"]):
        h.realtime.added[item] = NOW_MS - n * 60_000
    h.realtime.set_item("fresh-x", category="books")
    h.realtime.added["old-1"] = NOW_MS - 40 * 86_400_000


def test_new_lists_recently_added_available_items_newest_first() -> None:
    with harness() as h:
        added(h)
        body = h.get("/v1/new", k=4).json()
        assert body["personalized"] is False and body["user_id"] is None and body["degraded"] is False
        assert [i["item_id"] for i in body["items"]] == ["books-0", "fresh-x", "books-1", "tools-0"]
        reason = body["items"][0]["reason"]
        assert reason["kind"] == "new" and reason["basis"] == "recency" and "note" not in reason
        assert reason["added_at"].endswith("+00:00")
        assert [i["item_id"] for i in h.get("/v1/new", category="tools").json()["items"]] == [
            "tools-0",
            "tools-1",
        ]
        assert "old-1" not in [i["item_id"] for i in h.get("/v1/new", k=50).json()["items"]]
        h.realtime.set_item("books-0", category="books", available=False)
        time.sleep(0.1)
        assert h.get("/v1/new", k=1).json()["items"][0]["item_id"] == "fresh-x"
        shown = [i for i in h.impressions if i.surface == "new"]
        assert len(shown) == 4 and shown[0].items[0].reason == "new"


def test_new_for_a_shopper_reorders_embedded_items_and_says_why_others_stay() -> None:
    with harness() as h:
        added(h)
        body = h.get("/v1/new", k=4, user_id="bob").json()  # bob likes tools
        assert body["personalized"] is True and body["user_id"] == "bob"
        items = body["items"]
        # The brand-new item keeps its place (this model has no content map to embed it from);
        # the three embedded places go to bob's best embedded new items: tools first.
        assert items[1]["item_id"] == "fresh-x" and items[1]["reason"]["note"] == NO_CONTENT_MODEL
        assert [items[n]["item_id"] for n in (0, 2)] == ["tools-0", "tools-1"]
        assert items[0]["reason"]["basis"] == "embedding"
        (shown,) = [i for i in h.impressions if i.surface == "new"]
        assert shown.user_id == "bob"
        # A shopper the model does not know: by recency, not personalised.
        stranger = h.get("/v1/new", k=4, user_id="zed").json()
        assert stranger["personalized"] is False
        assert [i["item_id"] for i in stranger["items"]] == ["books-0", "fresh-x", "books-1", "tools-0"]
        assert_error(h.get("/v1/new", user_id=""), 422)


def test_new_while_redis_is_down_is_degraded_not_an_error() -> None:
    with harness() as h:
        h.realtime.up = False
        resp = h.get("/v1/new")
        assert resp.status_code == 200 and resp.json()["degraded"] is True and resp.json()["items"] == []


def test_new_list_pure_slots_and_pool() -> None:
    loaded = tiny_loader(model_files(), type("R", (), {"version": 1, "metrics": {}, "trained_at": None})())
    model = loaded.model
    newest = [("books-0", 9), ("x-new", 8), ("books-1", 7), ("tools-5", 6), ("tools-6", 5)]
    tools = np.zeros(6, dtype=np.float32)
    tools[3] = 1.0
    plain = new_list(newest, 3, Filters(), model=model, user_vector=None)
    assert [r.item_id for r in plain] == ["books-0", "x-new", "books-1"]
    mine = new_list(newest, 3, Filters(), model=model, user_vector=tools, pool=5)
    assert mine[1].item_id == "x-new" and {mine[0].item_id, mine[2].item_id} == {"tools-5", "tools-6"}
    assert mine[0].score >= mine[2].score
    # The pool bounds how far back embedded items are taken from: only the newest 3 here.
    near = new_list(newest, 3, Filters(), model=model, user_vector=tools, pool=3)
    assert {near[0].item_id, near[2].item_id} == {"books-0", "books-1"}
    assert [r.item_id for r in new_list(newest, 5, Filters(exclude=frozenset({"x-new"})))] == [
        "books-0",
        "books-1",
        "tools-5",
        "tools-6",
    ]


def test_the_consumer_parses_trending_and_new_impressions_as_serving_encodes_them() -> None:
    from core.impressions import Impression, parse_impression
    from serving.impressions import Shown
    from serving.ranking import Ranked

    for surface, user in (("trending", None), ("new", "bob")):
        items = [Ranked("a", 2.5, surface, detail={"basis": "recency"})]  # type: ignore[arg-type]
        _key, value = Shown("req-1", surface, user, "3", items, NOW_MS).encode()
        parsed = parse_impression(value)
        assert isinstance(parsed, Impression), parsed
        assert parsed.surface == surface and parsed.user_id == user and parsed.items[0].reason == surface


def test_a_brand_new_item_with_a_content_embedding_is_placed_by_it() -> None:
    """Serving's model embeds a new catalog item from its document (cold start): /v1/new places it by
    the shopper's score like any embedded item, instead of keeping it by recency."""
    from model.hybrid import HybridModel, SideItems
    from tests.unit.cold_start_fixtures import clustered_model, item_doc

    base = clustered_model()
    vecs = base.content_vectors([item_doc("fresh-1", 1), item_doc("fresh-2", 2)])
    assert vecs is not None
    model = HybridModel(base, SideItems.empty(base.dim).upsert(["fresh-1", "fresh-2"], *vecs, max_items=10))
    shopper = base.user_vector("u1")  # shops in cluster 1
    assert shopper is not None
    newest = [("fresh-2", 3_000), ("fresh-1", 2_000), ("i0", 1_000)]
    out = new_list(newest, 2, Filters(), model=model, user_vector=shopper)
    assert [r.item_id for r in out] == ["fresh-1", "fresh-2"]  # the shopper's cluster first, not recency
    assert all(r.detail is not None and r.detail["basis"] == "embedding" for r in out)
