"""Exclusion policy: the pure rules, and the surfaces that use them (recommendations, similar, recent)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.recent import RecentEvent
from core.settings import ExclusionSettings, Settings, SimilarExclusion, SurfaceExclusion
from serving.exclusion import excluded_items, recent_items
from serving.service import RecsQuery, recent_distinct
from tests.unit.test_serving_helpers import category_of, harness

NOW = 10_000_000
MIN = 60_000


def ev(item: str, minutes_ago: float, kind: str = "view") -> RecentEvent:
    return RecentEvent(f"e-{item}-{minutes_ago}", item, kind, int(NOW - minutes_ago * MIN))


RECENT = (ev("a", 1), ev("b", 10, "click"), ev("c", 45), ev("a", 50))


def excluded(surface: SurfaceExclusion | None = None, **kw: Any) -> set[str]:
    policy = kw.pop("policy", ExclusionSettings())
    return set(
        excluded_items(
            surface or policy.recommendations,
            policy,
            recent=kw.pop("recent", RECENT),
            purchased=kw.pop("purchased", {"p"}),
            seen=kw.pop("seen", {"a", "b", "c", "old", "p"}),
            now_ms=NOW,
            **kw,
        )
    )


def test_default_policy_leaves_out_the_session_and_purchases_only() -> None:
    # c is 45 minutes old: outside the default 30-minute window; "old" was seen long ago.
    assert excluded() == {"a", "b", "p"}


def test_window_and_event_count_bound_what_is_recent() -> None:
    assert recent_items(RECENT, ExclusionSettings(recent_window_s=0), NOW) == {"a", "b", "c"}
    assert recent_items(RECENT, ExclusionSettings(recent_window_s=5 * 60), NOW) == {"a"}
    assert recent_items(RECENT, ExclusionSettings(recent_window_s=0, recent_events=2), NOW) == {"a", "b"}
    assert recent_items((), ExclusionSettings(), NOW) == set()


def test_exclude_seen_true_leaves_out_every_interaction_false_only_purchases() -> None:
    assert excluded(exclude_seen=True) == {"a", "b", "c", "old", "p"}
    # The recent list counts even when the seen set lags behind it.
    assert excluded(exclude_seen=True, seen=set()) == {"a", "b", "c", "p"}
    assert excluded(exclude_seen=False) == {"p"}


def test_include_purchased_overrides_the_policy_both_ways() -> None:
    recently_bought = (ev("p", 2, "purchase"), *RECENT)
    assert excluded(include_purchased=True, recent=recently_bought) == {"a", "b"}
    assert excluded(include_purchased=True, exclude_seen=True) == {"a", "b", "c", "old"}
    lenient = SurfaceExclusion(purchased=False, recent=False)
    assert excluded(lenient) == set()
    assert excluded(lenient, include_purchased=False) == {"p"}
    assert excluded(lenient, exclude_seen=True) == {"a", "b", "c", "old"}


def test_similar_surface_keeps_recent_items_by_default() -> None:
    policy = ExclusionSettings()
    assert policy.similar == SimilarExclusion() and policy.similar.recent is False
    assert excluded(policy.similar) == {"p"}


def test_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SERVING__EXCLUSION__RECOMMENDATIONS__RECENT", "false")
    monkeypatch.setenv("STREAMREC_SERVING__EXCLUSION__SIMILAR__RECENT", "true")
    monkeypatch.setenv("STREAMREC_SERVING__EXCLUSION__RECENT_WINDOW_S", "60")
    policy = Settings(_env_file=None).serving.exclusion  # type: ignore[call-arg]
    assert policy.recommendations.recent is False and policy.recommendations.purchased is True
    assert policy.similar.recent is True and policy.recent_window_s == 60.0


def test_every_exclusion_option_is_part_of_the_cache_key() -> None:
    keys = {
        RecsQuery("u", 10, frozenset(), None, include_purchased=p, exclude_seen=s).cache_params()
        for p in (None, True, False)
        for s in (None, True, False)
    }
    assert len(keys) == 9


def test_recent_distinct_keeps_each_items_newest_interaction() -> None:
    out = recent_distinct(RECENT, 10)
    assert [(i["item_id"], i["event_type"]) for i in out] == [("a", "view"), ("b", "click"), ("c", "view")]
    assert out[0]["ts_ms"] == NOW - MIN and out[0]["timestamp"].endswith("+00:00")
    assert [i["item_id"] for i in recent_distinct(RECENT, 2)] == ["a", "b"]


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_a_click_steers_recommendations_but_is_not_echoed() -> None:
    with harness() as h:
        h.realtime.record("stranger", "games-3", "click")
        body = h.recs("stranger", k=5)
        assert "games-3" not in ids(body)
        assert all(category_of(i) == "games" for i in ids(body))  # the session still steers
        assert {"kind": "similar_to", "item_id": "games-3"} in [i["reason"] for i in body["items"]]
        # Without the recent exclusion the model's own top pick (the clicked item) comes back.
        assert ids(h.recs("stranger", k=5, exclude_seen=False))[0] == "games-3"
        assert "games-3" not in ids(h.recs("stranger", k=5))  # and the default is not cached over


def test_an_old_interaction_is_only_left_out_with_exclude_seen() -> None:
    with harness() as h:
        long_ago = int(time.time() * 1000) - 2 * 3600 * 1000
        h.realtime.record("stranger", "music-4", "view", ts_ms=long_ago)
        assert "music-4" in ids(h.recs("stranger", k=10))  # outside the 30-minute window
        assert "music-4" not in ids(h.recs("stranger", k=10, exclude_seen=True))
        assert_invalid(h.get("/v1/users/stranger/recommendations", exclude_seen="maybe"))


def test_recent_window_setting_applies() -> None:
    policy = ExclusionSettings(recent_window_s=0)
    with harness(exclusion=policy) as h:
        long_ago = int(time.time() * 1000) - 2 * 3600 * 1000
        h.realtime.record("stranger", "music-4", "view", ts_ms=long_ago)
        assert "music-4" not in ids(h.recs("stranger", k=10))


def test_similar_never_returns_the_anchor_nor_a_given_shoppers_purchases() -> None:
    with harness() as h:
        plain = ids(h.get("/v1/items/books-1/similar", k=5).json())
        assert "books-1" not in plain and len(plain) == 5
        bought, viewed = plain[0], plain[1]
        h.realtime.record("ann", bought, "purchase")
        h.realtime.record("ann", viewed, "view")
        body = h.get("/v1/items/books-1/similar", k=5, user_id="ann").json()
        assert body["user_id"] == "ann" and body["degraded"] is False
        assert bought not in ids(body) and viewed in ids(body) and "books-1" not in ids(body)
        seen = h.get("/v1/items/books-1/similar", k=5, user_id="ann", exclude_seen=True).json()
        assert bought not in ids(seen) and viewed not in ids(seen) and len(ids(seen)) == 5
        keep = h.get("/v1/items/books-1/similar", k=5, user_id="ann", include_purchased=True).json()
        assert ids(keep) == plain
        h.realtime.up = False
        down = h.get("/v1/items/books-1/similar", k=5, user_id="ann").json()
        assert down["degraded"] is True and ids(down) == plain


def test_recent_endpoint_lists_distinct_items_newest_first() -> None:
    with harness() as h:
        now = int(time.time() * 1000)
        history = [("books-1", "view"), ("games-2", "click"), ("books-1", "purchase")]
        for n, (item, kind) in enumerate(history):
            h.realtime.record("ann", item, kind, ts_ms=now + n)
        resp = h.get("/v1/users/ann/recent", limit=5)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"user_id", "items", "degraded", "request_id"}
        assert [(i["item_id"], i["event_type"], i["ts_ms"]) for i in body["items"]] == [
            ("books-1", "purchase", now + 2),
            ("games-2", "click", now + 1),
        ]
        assert ids(h.get("/v1/users/ann/recent", limit=1).json()) == ["books-1"]
        unknown = h.get("/v1/users/nobody/recent").json()
        assert unknown["items"] == [] and unknown["degraded"] is False
        for bad in (0, 201, "x"):
            assert_invalid(h.get("/v1/users/ann/recent", limit=bad))
        assert h.get("/v1/users/ann/recent", key=None).status_code == 401
        h.realtime.up = False
        down = h.get("/v1/users/ann/recent").json()
        assert down["degraded"] is True and down["items"] == []


def assert_invalid(resp: Any) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
