"""ShopperStore contract: the MongoDB adapter (real MongoDB-wire server) and the in-memory twin alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import Settings
from storage.shoppers import InMemoryShopperStore, ShopperStore
from storage.shoppers_mongo import MongoShopperStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["mongo", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[ShopperStore]:
    if request.param == "memory":
        yield InMemoryShopperStore()
        return
    settings: Settings = request.getfixturevalue("settings")
    mongo = MongoShopperStore.from_settings(settings.mongo)
    try:
        yield mongo
    finally:
        mongo.close()


def test_put_replaces_the_whole_set_and_get_reads_it_back(store: ShopperStore) -> None:
    assert store.get_attributes("carol") is None
    first = store.put_attributes("carol", {"country": "DE", "segment": "b2b", "n": 3, "vip": True}, T0)
    assert first.attributes["n"] == 3
    got = store.get_attributes("carol")
    assert got is not None and got.user_id == "carol" and got.updated_at == T0
    assert got.attributes == {"country": "DE", "segment": "b2b", "n": 3, "vip": True}
    later = T0 + timedelta(minutes=1)
    store.put_attributes("carol", {"segment": "retail", "x": None}, later)
    got = store.get_attributes("carol")
    assert got is not None and got.attributes == {"segment": "retail", "x": None} and got.updated_at == later


def test_attribute_values_lists_every_shopper_with_a_non_null_value(store: ShopperStore) -> None:
    store.put_attributes("a", {"segment": "b2b"}, T0)
    store.put_attributes("b", {"segment": 7}, T0)
    store.put_attributes("c", {"segment": None}, T0)
    store.put_attributes("d", {"country": "FR"}, T0)
    assert store.attribute_values("segment") == {"a": "b2b", "b": 7}
    assert store.attribute_values("country") == {"d": "FR"}
    assert store.attribute_values("nothing") == {}


def test_erase_deletes_one_shopper_only_and_is_idempotent(store: ShopperStore) -> None:
    store.put_attributes("a", {"segment": "b2b"}, T0)
    store.put_attributes("b", {"segment": "b2b"}, T0)
    assert store.erase_user("a") == 1
    assert store.erase_user("a") == 0
    assert store.get_attributes("a") is None
    assert store.attribute_values("segment") == {"b": "b2b"}
