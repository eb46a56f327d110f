"""ImpressionStore contract: the MongoDB adapter (real MongoDB-wire server) and the in-memory twin alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.impressions import Impression, ShownItem, impression_document
from core.settings import Settings
from storage.impressions import ImpressionStore, InMemoryImpressionStore
from storage.impressions_mongo import TTL_INDEX, MongoImpressionStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def doc(
    iid: str,
    user: str | None = "u1",
    minutes: int = 0,
    shadow: bool = False,
    items: tuple[str, ...] = ("i1",),
) -> dict[str, Any]:
    return impression_document(
        Impression(
            impression_id=iid,
            request_id=iid.removesuffix(":shadow"),
            user_id=user,
            surface="recommendations",
            model_version="2",
            items=[
                ShownItem(item_id=i, position=n, reason="personal", score=0.5) for n, i in enumerate(items)
            ],
            ts=T0 + timedelta(minutes=minutes),
            shadow=shadow,
        ),
        ingested_at=T0,
    )


@pytest.fixture(params=["mongo", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[ImpressionStore]:
    if request.param == "memory":
        yield InMemoryImpressionStore()
        return
    settings: Settings = request.getfixturevalue("settings")
    mongo = MongoImpressionStore.from_settings(settings.mongo)
    try:
        yield mongo
    finally:
        mongo.close()


def ids(docs: Any) -> list[str]:
    return sorted(str(d["_id"]) for d in docs)


def test_insert_is_idempotent_by_id_and_keeps_the_first_version(store: ImpressionStore) -> None:
    store.ensure_indexes(86400)
    assert store.insert_impressions([doc("r1"), doc("r2")]) == {"r1", "r2"}
    # Redelivered r1 (even with other content) is kept as stored; r1 twice in one call stores one.
    assert store.insert_impressions([doc("r1", items=("changed",)), doc("r3"), doc("r3")]) == {"r3"}
    assert store.insert_impressions([]) == set()
    got = store.impressions_by_id(["r1", "r3", "nope", "r1"])
    assert ids(got.values()) == ["r1", "r3"]
    stored = got["r1"]
    assert stored["item_ids"] == ["i1"]
    assert stored["items"] == [{"item_id": "i1", "position": 0, "reason": "personal", "score": 0.5}]
    assert stored["ts"] == T0 and stored["shadow"] is False and stored["model_version"] == "2"
    assert store.impressions_by_id([]) == {}


def test_recent_for_users_is_live_only_of_those_users_since_a_time(store: ImpressionStore) -> None:
    store.ensure_indexes(86400)
    store.insert_impressions(
        [
            doc("old", minutes=-40),
            doc("edge", minutes=-30),
            doc("new", minutes=0),
            doc("new:shadow", minutes=0, shadow=True),
            doc("other", user="u2"),
            doc("third", user="u3"),
            doc("anon", user=None),
        ]
    )
    since = T0 - timedelta(minutes=30)
    assert ids(store.recent_for_users(["u1", "u2"], since)) == ["edge", "new", "other"]
    assert store.recent_for_users([], since) == []
    assert ids(store.recent_for_users(["nobody"], since)) == []


def test_impressions_since_in_time_order_and_by_shadow(store: ImpressionStore) -> None:
    store.insert_impressions(
        [
            doc("b", minutes=2),
            doc("a", minutes=1),
            doc("a:shadow", minutes=1, shadow=True),
            doc("z", minutes=-5),
        ]
    )
    assert [d["_id"] for d in store.impressions_since(T0)] == ["a", "b"]
    assert [d["_id"] for d in store.impressions_since(T0, shadow=True)] == ["a:shadow"]
    assert ids(store.impressions_since(T0, shadow=None)) == ["a", "a:shadow", "b"]


def test_erase_user_deletes_only_that_users_impressions(store: ImpressionStore) -> None:
    store.insert_impressions([doc("r1"), doc("r1:shadow", shadow=True), doc("r2", user="u2")])
    assert store.erase_user("u1") == 2
    assert store.erase_user("u1") == 0
    assert ids(store.impressions_since(T0 - timedelta(days=1), shadow=None)) == ["r2"]


def test_ttl_index_has_the_configured_retention_and_follows_a_change(
    settings: Settings, mongo_db: Any
) -> None:
    store = MongoImpressionStore.from_settings(settings.mongo)
    try:
        retention_s = settings.serving.impressions.retention_days * 86400
        store.ensure_indexes(retention_s)
        store.ensure_indexes(retention_s)  # idempotent
        indexes = mongo_db["impressions"].index_information()
        assert indexes[TTL_INDEX]["key"] == [("ts", 1)]
        assert indexes[TTL_INDEX]["expireAfterSeconds"] == int(retention_s) == 30 * 86400
        assert indexes["user_ts"]["key"] == [("user_id", 1), ("ts", 1)]
        store.insert_impressions([doc("kept")])
        store.ensure_indexes(7 * 86400)  # the operator shortened the retention
        indexes = mongo_db["impressions"].index_information()
        assert indexes[TTL_INDEX]["expireAfterSeconds"] == 7 * 86400
        assert mongo_db["impressions"].count_documents({}) == 1  # the data stays
    finally:
        store.close()
