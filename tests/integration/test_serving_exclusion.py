"""The exclusion policy end to end: a click goes API -> Kafka -> consumer -> Redis, and the next
recommendations leave the clicked item out while "recently viewed" shows it (issue 16's proof)."""

from __future__ import annotations

import time
from typing import Any

from core.settings import Settings
from tests.integration.test_consumer_e2e import running_consumer, wait_until
from tests.integration.test_serving_api import live_app, with_keys
from tests.unit.test_serving_helpers import INGEST, READ, category_of

READ_AUTH = {"X-API-Key": READ}


def test_a_click_is_not_echoed_but_is_recently_viewed(settings: Settings, kafka_topics: Any) -> None:
    settings = with_keys(settings)
    kafka_topics.create(settings.kafka.topics.events, partitions=1)
    kafka_topics.create(settings.kafka.topics.items, partitions=1)
    shopper = "shopper-1"  # unknown to the model: the session alone decides, the clicked item is its top

    def recs(**params: Any) -> list[dict[str, Any]]:
        resp = client.get(
            f"/v1/users/{shopper}/recommendations", params={"k": 5, **params}, headers=READ_AUTH
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["degraded"] is False
        return resp.json()["items"]  # type: ignore[no-any-return]

    def recent() -> list[str]:
        resp = client.get(f"/v1/users/{shopper}/recent", params={"limit": 5}, headers=READ_AUTH)
        assert resp.status_code == 200, resp.text
        return [i["item_id"] for i in resp.json()["items"]]

    with running_consumer(settings) as (_runner, thread, result), live_app(settings) as client:
        assert recent() == []
        click = {
            "event_id": "click-1",
            "event_type": "click",
            "user_id": shopper,
            "item_id": "games-3",
            "timestamp": int(time.time() * 1000),
        }
        resp = client.post("/v1/events", json=[click], headers={"X-API-Key": INGEST})
        assert resp.status_code == 202 and resp.json()["accepted"] == 1, resp.text
        wait_until(lambda: recent() == ["games-3"], 60, "the click to reach Redis through Kafka")
        assert thread.is_alive(), result

        items = recs()
        ids = [i["item_id"] for i in items]
        assert "games-3" not in ids
        # The click still steers the list: items like it, saying so.
        assert all(category_of(i) == "games" for i in ids)
        assert any(i["reason"] == {"kind": "similar_to", "item_id": "games-3"} for i in items)
        echoed = [i["item_id"] for i in recs(exclude_seen="false")]
        assert echoed[0] == "games-3"
        assert "games-3" not in [i["item_id"] for i in recs(exclude_seen="true")]
        assert "games-3" not in [i["item_id"] for i in recs()]  # the default is not served from cache
