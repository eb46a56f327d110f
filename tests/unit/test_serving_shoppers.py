"""PUT/GET /v1/users/{user_id} (shopper attributes), their erasure, and the segment list served to a
shopper without history when the artifact says it wins."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core.shoppers import segment_key, validate_shopper_update
from model.segment_popularity import FILE_NAME, SegmentPopularity, segments_from_files
from serving.model_port import LoadedModel
from serving.ranking import Filters, Ranked
from serving.segment_fallback import segment_ranked
from tests.unit.test_serving_api import assert_error
from tests.unit.test_serving_helpers import ADMIN, INGEST, READ, harness, model_files, tiny_loader

URL = "/v1/users/{}"


def put(h: Any, user: str, body: Any, key: str | None = INGEST) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return h.client.put(URL.format(user), json=body, headers=headers)


def test_put_stores_replaces_and_get_returns_the_attributes() -> None:
    with harness() as h:
        resp = put(h, "carol", {"attributes": {"country": "DE", "segment": "b2b", "age_band": 3}})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["user_id"] == "carol" and body["attributes"]["country"] == "DE"
        assert body["updated_at"].endswith("+00:00")
        got = h.get(URL.format("carol"), key=INGEST).json()
        assert got["attributes"] == {"country": "DE", "segment": "b2b", "age_band": 3}
        # A PUT replaces the whole set.
        assert put(h, "carol", {"attributes": {"segment": "retail"}}).status_code == 200
        assert h.shoppers.get_attributes("carol").attributes == {"segment": "retail"}  # type: ignore[union-attr]
        assert h.get(URL.format("carol"), key=ADMIN).status_code == 200  # admin implies ingest


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"attributes": {"$where": "x"}}, "invalid_key", "'$'"),
        ({"attributes": {"a.b": 1}}, "invalid_key", "path"),
        ({"attributes": {"nested": {"x": 1}}}, "invalid_value", "scalar"),
        ({"attributes": {"list": [1]}}, "invalid_value", "scalar"),
        ({"attributes": {"s": "x" * 1025}}, "invalid_value", "longer than 1024"),
        ({"attributes": {f"k{i}": i for i in range(33)}}, "invalid_value", "at most 32"),
        ({"attributes": {"big": 2**70}}, "integer_out_of_range", "64"),
        ({"attributes": {"": 1}}, "invalid_value", "1..64"),
    ],
)
def test_bad_attributes_get_a_clear_422(body: dict[str, Any], code: str, words: str) -> None:
    with harness() as h:
        resp = put(h, "carol", body)
        assert_error(resp, 422, code)
        assert words in resp.json()["error"]["message"]
        assert h.shoppers.docs == {}


def test_malformed_bodies_auth_and_unknown_users() -> None:
    with harness() as h:
        for body in ({"segment": "x"}, {"attributes": "x"}, {"attributes": None}, [1], {}):
            assert_error(put(h, "carol", body), 422)
        assert_error(put(h, "carol", {"attributes": {"a": 1}}, key=None), 401, "unauthorized")
        assert_error(put(h, "carol", {"attributes": {"a": 1}}, key=READ), 403, "forbidden")
        # Personal data: reading it back needs the ingest key too, never a read key.
        assert_error(h.get(URL.format("carol"), key=READ), 403, "forbidden")
        assert_error(h.get(URL.format("nobody"), key=INGEST), 404, "unknown_user")
        assert_error(put(h, "%20", {"attributes": {"a": 1}}), 422, "invalid_value")
        assert_error(put(h, "a%07b", {"attributes": {"a": 1}}), 422, "control_character")
        assert_error(h.get(URL.format("a%07b"), key=INGEST), 404, "unknown_user")  # never stored


def test_mongo_down_is_a_503() -> None:
    with harness() as h:

        def down(*_args: Any) -> Any:
            raise ConnectionError("mongo is down")

        h.shoppers.put_attributes = down  # type: ignore[method-assign,assignment]
        h.shoppers.get_attributes = down  # type: ignore[method-assign,assignment]
        assert_error(put(h, "carol", {"attributes": {"a": 1}}), 503, "mongodb_unavailable")
        assert_error(h.get(URL.format("carol"), key=INGEST), 503, "mongodb_unavailable")


def test_erasure_deletes_the_attributes_with_the_user() -> None:
    with harness() as h:
        put(h, "alice", {"attributes": {"segment": "b2b"}})
        put(h, "bob", {"attributes": {"segment": "b2b"}})
        resp = h.client.delete(URL.format("alice"), headers={"X-API-Key": ADMIN})
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"]["attributes"] == 1
        assert_error(h.get(URL.format("alice"), key=INGEST), 404, "unknown_user")
        assert h.get(URL.format("bob"), key=INGEST).status_code == 200  # nobody else's
        again = h.client.delete(URL.format("alice"), headers={"X-API-Key": ADMIN}).json()
        assert again["deleted"]["attributes"] == 0  # idempotent


def test_core_validation_and_segment_keys() -> None:
    ok = validate_shopper_update({"attributes": {"country": "DE", "vip": True, "score": 1.5, "x": None}})
    assert not hasattr(ok, "code") and ok.attributes["vip"] is True  # type: ignore[union-attr]
    assert validate_shopper_update("x").code == "not_object"  # type: ignore[union-attr]
    assert validate_shopper_update({"attributes": {}, "extra": 1}).code == "invalid_value"  # type: ignore[union-attr]
    assert [segment_key(v) for v in ("b2b", "", 3, 1.5, True, None, [1])] == [
        "b2b",
        None,
        "3",
        "1.5",
        "true",
        None,
        None,
    ]


SEGMENTS = {
    "gamers": (("games-3", 9.0), ("games-1", 8.0), ("gone-item", 7.0)),
    "readers": (("books-5", 1.0),),
}


def segment_loader(files: dict[str, bytes], record: Any) -> LoadedModel:
    return dataclasses.replace(tiny_loader(files, record), segments=segments_from_files(files))


def with_segments(wins: bool) -> dict[str, bytes]:
    seg = SegmentPopularity("segment", wins, "test", 0.3, 0.1, 99, SEGMENTS)
    return model_files() | {FILE_NAME: seg.to_bytes()}


def kinds(body: dict[str, Any]) -> list[str]:
    return [i["reason"]["kind"] for i in body["items"]]


def test_a_shopper_without_history_gets_their_segment_list_when_it_wins() -> None:
    with harness(loader=segment_loader) as h:
        h.wait_for_version(h.publish(with_segments(wins=True)))
        put(h, "carol", {"attributes": {"segment": "gamers"}})
        put(h, "alice", {"attributes": {"segment": "gamers"}})
        body = h.recs("carol", k=4)
        items = body["items"]
        assert [i["item_id"] for i in items[:3]] == ["games-3", "games-1", "gone-item"]
        assert items[0]["reason"] == {"kind": "segment_popular", "segment": "gamers"}
        assert kinds(body)[-1] == "popular"  # topped up from global popularity
        # A shopper with history is personalised as before, whatever their segment.
        assert h.recs("alice", k=3)["items"][0]["reason"] == {"kind": "personalized"}
        # No attribute, or a segment without a list: global popularity.
        assert set(kinds(h.recs("dave", k=3))) == {"popular"}
        put(h, "erin", {"attributes": {"segment": "nobody-here"}})
        assert set(kinds(h.recs("erin", k=3))) == {"popular"}

        # Attributes unreadable: global popularity, never an error.
        def down(*_args: Any) -> Any:
            raise ConnectionError("mongo is down")

        put(h, "frank", {"attributes": {"segment": "gamers"}})
        h.shoppers.get_attributes = down  # type: ignore[method-assign,assignment]
        body = h.recs("frank", k=3)
        assert set(kinds(body)) == {"popular"} and body["degraded"] is False


def test_global_popularity_is_served_when_the_segment_lists_lost() -> None:
    with harness(loader=segment_loader) as h:
        h.wait_for_version(h.publish(with_segments(wins=False)))
        put(h, "carol", {"attributes": {"segment": "gamers"}})
        assert set(kinds(h.recs("carol", k=3))) == {"popular"}


def test_segment_ranked_applies_the_filters_and_tops_up_without_repeats() -> None:
    fill = [Ranked("p1", 5.0, "popular"), Ranked("a", 4.0, "popular"), Ranked("p2", 3.0, "popular")]
    got = segment_ranked(
        [("a", 2.0), ("b", 1.0), ("c", 0.5)], "S", fill, 4, Filters(unavailable=frozenset({"b"}))
    )
    assert [(r.item_id, r.kind) for r in got] == [
        ("a", "segment_popular"),
        ("c", "segment_popular"),
        ("p1", "popular"),
        ("p2", "popular"),
    ]
    assert got[0].to_json()["reason"] == {"kind": "segment_popular", "segment": "S"}
