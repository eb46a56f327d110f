"""Every list answer is logged as one impression (through the impression log twin), off the request path."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from core.impressions import Impression, parse_impression
from serving.impressions import Shown, shown_items
from serving.ranking import Ranked
from storage.impression_log import InMemoryImpressionLog
from tests.unit.test_serving_helpers import harness


def only(records: list[Impression], request_id: str) -> Impression:
    found = [r for r in records if r.request_id == request_id]
    assert len(found) == 1, found
    return found[0]


def matches(imp: Impression, items: list[dict[str, object]]) -> None:
    """The impression lists exactly the answer's items, in order, with their reasons and scores."""
    assert [(s.item_id, s.position, s.reason, s.score) for s in imp.items] == [
        (i["item_id"], pos, i["reason"]["kind"], i["score"])  # type: ignore[index]
        for pos, i in enumerate(items)
    ]


def test_one_impression_per_list_with_positions_and_reasons() -> None:
    with harness() as h:
        h.realtime.record("alice", "tools-4")  # a session: similar_to reasons beside personalized ones
        recs = h.recs("alice", k=8)
        similar = h.get("/v1/items/books-1/similar", k=3, user_id="alice").json()
        anonymous = h.get("/v1/items/books-1/similar", k=2).json()
        popular = h.get("/v1/popular", k=4, window="all").json()
        assert len(h.impressions) == 4

        imp = only(h.impressions, recs["request_id"])
        assert imp.impression_id == recs["request_id"] and imp.surface == "recommendations"
        assert imp.user_id == "alice" and imp.model_version == "1" and imp.shadow is False
        assert imp.experiment_id is None and imp.variant is None
        matches(imp, recs["items"])
        assert {s.reason for s in imp.items} == {"personalized", "similar_to"}

        imp = only(h.impressions, similar["request_id"])
        assert (imp.surface, imp.user_id, imp.anchor_item_id) == ("similar", "alice", "books-1")
        matches(imp, similar["items"])
        imp = only(h.impressions, anonymous["request_id"])
        assert imp.user_id is None and imp.key == b"books-1"

        imp = only(h.impressions, popular["request_id"])
        assert (imp.surface, imp.user_id, imp.model_version) == ("popular", None, "1")
        matches(imp, popular["items"])
        # Each record is what the consumer will parse from the topic.
        for record in h.impressions:
            assert parse_impression(record.to_json()) == record


def test_cache_hits_and_degraded_answers_are_logged_too() -> None:
    with harness() as h:
        first = h.recs("carol", k=3)
        time.sleep(0.1)  # the cache write is fire-and-forget
        second = h.recs("carol", k=3)
        assert h.client.app.state.metrics.cache_hits._value.get() == 1  # type: ignore[attr-defined]
        hit = only(h.impressions, second["request_id"])
        assert first["request_id"] != second["request_id"]
        matches(hit, second["items"])
        assert hit.model_version == "1"

        h.realtime.up = False  # Redis down: a degraded answer is still a list that was shown
        degraded = h.recs("carol", k=3)
        assert degraded["degraded"] is True
        matches(only(h.impressions, degraded["request_id"]), degraded["items"])


def test_non_list_endpoints_log_nothing() -> None:
    with harness() as h:
        h.get("/v1/users/alice/recent")
        h.get("/v1/model")
        h.get("/readyz")
        h.get("/v1/items/nope/similar")  # 404: nothing was shown
        assert h.impressions == []


def test_a_full_log_drops_counted_and_answers_still_served() -> None:
    log = InMemoryImpressionLog(capacity=1)
    with harness(impression_log=log) as h:
        for _ in range(3):
            assert h.get("/v1/users/alice/recommendations", k=2).status_code == 200
        log.full = True
        assert h.get("/v1/popular").status_code == 200
        assert len(log.records) == 1
        text = h.get("/metrics").text
        assert 'streamrec_serving_impressions_dropped_total{reason="queue_full"} 3.0' in text
        assert "streamrec_serving_impressions_queued_total 1.0" in text
        assert "streamrec_serving_impressions_sent_total 1.0" in text


def test_impressions_disabled_serves_and_exports_zero_counts() -> None:
    with harness(impressions=False) as h:  # open_adapters passes no log when enabled=false
        assert h.impression_log is None
        assert h.recs("alice", k=2)["items"]
        assert h.get("/v1/popular").status_code == 200
        text = h.get("/metrics").text
        assert "streamrec_serving_impressions_queued_total 0.0" in text


def test_shown_builds_from_a_ranked_list_or_cached_json_alike() -> None:
    ranked = [Ranked("a", 0.91234567, "personalized"), Ranked("b", 0.5, "similar_to", "a")]
    cached = b'[{"item_id":"a","score":0.912346,"reason":{"kind":"personalized"}},' + (
        b'{"item_id":"b","score":0.5,"reason":{"kind":"similar_to","item_id":"a"}}]'
    )
    assert shown_items(ranked) == shown_items(cached)
    shown = Shown("req-1", "recommendations", "u1", "3", ranked, 1_700_000_000_000, "exp", "b", shadow=True)
    imp = shown.build()
    assert imp.impression_id == "req-1:shadow" and imp.request_id == "req-1" and imp.shadow
    assert imp.ts.timestamp() == 1_700_000_000
    long_id = "r" * 128  # the longest request id a client may send still makes a valid shadow id
    assert Shown(long_id, "popular", None, None, [], 0, shadow=True).build().impression_id.endswith(":shadow")


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("shadow", [False, True])
def test_the_senders_fast_encoding_is_the_validated_record(cached: bool, shadow: bool) -> None:
    """``Shown.encode`` skips pydantic on the sender thread; it must say exactly what ``build`` says."""
    ranked = [Ranked(f"i{n}", 1.0 / (n + 1), "personalized" if n else "popular", None) for n in range(5)]
    items: Any = orjson.dumps([r.to_json() for r in ranked]) if cached else ranked
    for user, anchor in (("u1", None), (None, "i9")):
        shown = Shown(
            "req-7", "similar", user, "4", items, 1_764_500_000_123, "exp", "treatment", anchor, shadow
        )
        key, value = shown.encode()
        built = shown.build()
        assert parse_impression(value) == built
        assert key == built.key
