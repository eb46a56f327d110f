"""Merchandising against real MongoDB and Redis: items stored by the event store reach the serving
catalog snapshot, rules written through the admin API (and by another process, straight to MongoDB)
apply within 2 s, and filters on catalog properties work on the stored catalog."""

from __future__ import annotations

import time

from core.merch_rules import Condition, Rule
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.merch_rules import MongoRuleStore
from tests.integration.test_serving_api import AUTH, live_app, with_keys
from tests.unit.test_serving_helpers import CATEGORIES, PER_CATEGORY, READ

ALL_IDS = [f"{c}-{j}" for c in CATEGORIES for j in range(PER_CATEGORY)]


def brand_of(item_id: str) -> str:
    return "acme" if int(item_id.split("-")[1]) % 2 == 0 else "zeta"


def test_filters_and_rules_on_the_stored_catalog(settings: Settings) -> None:
    settings = with_keys(settings, catalog_poll_s=0.2, cache_ttl_s=30)
    store = MongoEventStore.from_settings(settings.mongo)
    rules = MongoRuleStore.from_settings(settings.mongo)
    try:
        store.upsert_items(
            [
                {
                    "item_id": iid,
                    "category": iid.split("-")[0],
                    "price": 10.0 * int(iid.split("-")[1]),
                    "available": True,
                    "properties": {"brand": brand_of(iid)},
                }
                for iid in ALL_IDS
            ]
        )
        with live_app(settings) as client:
            deadline = time.monotonic() + 10
            while len(client.app.state.catalog) < len(ALL_IDS):  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "catalog not loaded from MongoDB"
                time.sleep(0.05)
            read = {"X-API-Key": READ}
            url = "/v1/items/books-0/similar"
            got = client.get(url, params={"k": 5, "brand": "zeta", "price_max": 50}, headers=read).json()
            assert len(got["items"]) == 5
            assert all(brand_of(i["item_id"]) == "zeta" and int(i["item_id"][-1]) <= 5 for i in got["items"])
            bad = client.get(url, params={"filter": "size:42"}, headers=read)
            assert bad.status_code == 400 and "unknown property 'size'" in bad.json()["error"]["message"]

            # A new item arrives in the catalog: it is filterable within 2 s.
            store.upsert_items([{"item_id": "books-3", "properties": {"brand": "nova"}}])
            started = time.monotonic()
            while True:
                found = client.get("/v1/popular", params={"k": 5, "brand": "nova"}, headers=read)
                if found.status_code == 200 and [i["item_id"] for i in found.json()["items"]] == ["books-3"]:
                    break
                assert time.monotonic() - started < 2.0, found.text
                time.sleep(0.05)

            recs_url = "/v1/users/alice/recommendations"
            before = client.get(recs_url, params={"k": 5}, headers=read).json()["items"]
            made = client.post(
                "/v1/admin/rules",
                json={"rule_id": "hero", "kind": "pin", "item_id": "tools-9", "position": 1},
                headers=AUTH,
            )
            assert made.status_code == 201, made.text
            after = client.get(recs_url, params={"k": 5}, headers=read).json()["items"]
            assert after[0]["item_id"] == "tools-9" and after[0]["reason"]["rules"] == [
                {"rule_id": "hero", "kind": "pin"}
            ]
            assert [i["item_id"] for i in after[1:]] == [i["item_id"] for i in before[:4]]

            # Written by another process (the CLI): this replica follows within 2 s, cache included.
            rules.add(
                Rule(rule_id="no-acme", kind="block", condition=Condition(property="brand", value="acme"))
            )
            started = time.monotonic()
            while True:
                items = client.get(recs_url, params={"k": 5}, headers=read).json()["items"]
                if all(brand_of(i["item_id"]) == "zeta" for i in items):
                    break
                assert time.monotonic() - started < 2.0, items
                time.sleep(0.05)
            assert items[0]["item_id"] == "tools-9"  # tools-9 is a zeta item: still pinned
            listed = client.get("/v1/admin/rules", headers=AUTH).json()
            assert listed["version"] == 2 and [r["rule_id"] for r in listed["rules"]] == ["hero", "no-acme"]
    finally:
        rules.close()
        store.close()
