"""HTTP contract: success and error paths of every endpoint, auth, limits, cache, erasure."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.unit.test_serving_helpers import ADMIN, INGEST, READ, category_of, harness


def event(n: int = 1, user: str = "u1", item: str = "books-1", **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e{n}",
        "event_type": "click",
        "user_id": user,
        "item_id": item,
        "timestamp": int(time.time() * 1000),
        **extra,
    }


def assert_error(resp, status: int, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "request_id"} and body["error"]["message"]
    # The same id in the body and the header (the header is what clients quote in support requests).
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    if code:
        assert body["error"]["code"] == code


def test_recommendations_shape_and_reasons() -> None:
    with harness() as h:
        body = h.recs("alice", k=4)
        assert set(body) == {
            "user_id",
            "items",
            "model_version",
            "degraded",
            "request_id",
            "experiment_id",
            "variant",
        }
        assert body["experiment_id"] is None and body["variant"] is None  # no experiment runs
        assert body["model_version"] == "1" and body["degraded"] is False
        assert len(body["items"]) == 4
        assert all(category_of(i["item_id"]) == "books" for i in body["items"])
        assert body["items"][0]["reason"] == {"kind": "personalized"}


def test_auth_missing_wrong_and_scopes() -> None:
    with harness() as h:
        assert_error(h.get("/v1/users/alice/recommendations", key=None), 401, "unauthorized")
        assert_error(h.get("/v1/users/alice/recommendations", key="nope"), 401, "unauthorized")
        assert h.get("/v1/users/alice/recommendations", key=ADMIN).status_code == 200  # admin implies read
        resp = h.client.get("/v1/popular", headers={"Authorization": f"Bearer {READ}"})
        assert resp.status_code == 200
        assert_error(
            h.client.post("/v1/events", json=[event()], headers={"X-API-Key": READ}), 403, "forbidden"
        )
        assert_error(h.client.delete("/v1/users/alice", headers={"X-API-Key": INGEST}), 403)
        assert_error(h.client.post("/v1/admin/retrain", headers={"X-API-Key": READ}), 403)
        # A malformed Authorization header is refused even beside a valid X-API-Key.
        for bad in ("4XP", "Bearer", "Bearer  ", f"Basic {READ}"):
            headers = {"X-API-Key": READ, "Authorization": bad}
            resp = h.client.get("/v1/users/alice/recommendations", headers=headers)
            assert_error(resp, 401, "unauthorized")
            assert "Bearer <API key>" in resp.json()["error"]["message"]
            assert_error(h.client.post("/v1/events", json=[event()], headers=headers), 401)


def test_public_read() -> None:
    with harness(public_read=True) as h:
        assert h.get("/v1/users/alice/recommendations", key=None).status_code == 200
        assert_error(h.client.post("/v1/events", json=[event()]), 401)


def test_framework_errors_use_the_error_shape() -> None:
    with harness() as h:
        assert_error(h.get("/v1/nope"), 404, "not_found")
        assert_error(h.client.post("/healthz"), 405, "method_not_allowed")
        assert_error(h.get("/v1/users/alice/recommendations", k=0), 422, "invalid_request")
        assert_error(h.get("/v1/users/alice/recommendations", k="x"), 422)
        assert_error(h.get("/v1/users/alice/recommendations", k=201), 422)
        assert "at most 200" in h.get("/v1/users/alice/recommendations", k=201).json()["error"]["message"]
        # The hot route validates its own parameters; its errors must read like FastAPI's.
        bad_k = h.get("/v1/users/alice/recommendations", k="x").json()["error"]["message"]
        assert bad_k.startswith("query.k: ") and "integer" in bad_k
        bad_flag = h.get("/v1/users/alice/recommendations", include_purchased="maybe").json()
        assert bad_flag["error"]["message"].startswith("query.include_purchased: ")
        long_id = h.get("/v1/users/" + "u" * 300 + "/recommendations").json()
        assert long_id["error"]["message"].startswith("path.user_id: ")
        assert_error(h.get("/v1/users/alice/recommendations", category=""), 422)
        assert_error(h.get("/v1/popular", window="2w"), 422)
        assert_error(h.get("/v1/items/nope/similar"), 404, "unknown_item")


def test_similar_and_popular() -> None:
    with harness() as h:
        h.realtime.set_item("books-2", category="books", available=False)
        body = h.get("/v1/items/books-1/similar", k=5).json()
        ids = [i["item_id"] for i in body["items"]]
        assert len(ids) == 5 and "books-1" not in ids and "books-2" not in ids
        assert all(category_of(i) == "books" for i in ids)
        h.realtime.record("x", "music-3", weight=5)
        h.realtime.record("x", "games-1", weight=2)
        time.sleep(0.2)  # snapshot refresh
        body = h.get("/v1/popular", k=3, window="all").json()
        assert [i["item_id"] for i in body["items"]][:2] == ["music-3", "games-1"]
        assert len(body["items"]) == 3  # topped up from the model's popularity
        body = h.get("/v1/popular", k=3, window="1h", category="games").json()
        assert [i["item_id"] for i in body["items"]] == ["games-1"]


def test_no_model_serves_popular_and_reports() -> None:
    with harness(with_model=False) as h:
        h.realtime.record("x", "tools-3")
        time.sleep(0.3)  # popularity snapshot refresh
        body = h.recs("alice", k=2)
        assert body["model_version"] is None
        assert [i["reason"]["kind"] for i in body["items"]] == ["popular"]
        assert_error(h.get("/v1/model"), 503, "no_model")
        assert_error(h.get("/v1/items/books-1/similar"), 503, "no_model")
        # No model yet still answers (popularity): a fresh install fed over HTTP must be ready.
        ready = h.get("/readyz").json()
        assert ready["ready"] is True and ready["mode"] == "popularity"
        assert ready["checks"]["model"].startswith("none")


def test_events_accepted_errors_and_limits() -> None:
    with harness(max_batch=3, max_body_bytes=4096, ingest_timeout_s=0.5) as h:
        auth = {"X-API-Key": INGEST}
        resp = h.client.post(
            "/v1/events", json=[event(1), {"event_type": "click"}, event(3, event_type="zap")], headers=auth
        )
        assert resp.status_code == 202
        body = resp.json()
        assert body["accepted"] == 1
        assert [(e["index"], e["code"]) for e in body["errors"]] == [
            (1, "missing_field"),
            (2, "unknown_event_type"),
        ]
        assert [(t, k) for t, k, _ in h.producer.messages] == [(h.settings.kafka.topics.events, b"u1")]
        resp = h.client.post("/v1/events", json={"events": [event(4)]}, headers=auth)
        assert resp.json()["accepted"] == 1
        assert_error(
            h.client.post("/v1/events", json=[event(i) for i in range(4)], headers=auth),
            422,
            "batch_too_large",
        )
        big = [event(1, properties={"p": "x" * 1024}) for _ in range(2)] + [
            event(2, properties={"q": "y" * 1024}) for _ in range(3)
        ]
        assert h.client.post("/v1/events", json=big, headers=auth).status_code == 413
        assert_error(h.client.post("/v1/events", content=b"{not json", headers=auth), 422)
        h.producer.fail = "broker down"
        assert_error(h.client.post("/v1/events", json=[event(9)], headers=auth), 503, "kafka_unavailable")
        ready = h.get("/readyz").json()  # the ingest path is reported down; reads stay in service
        assert ready["ready"] is True and ready["checks"]["ingest"] == "down (1 messages failed: broker down)"
        h.producer.fail = None
        assert h.client.post("/v1/events", json=[event(9)], headers=auth).status_code == 202
        assert h.get("/readyz").json()["checks"]["ingest"] == "ok"


def test_item_update() -> None:
    with harness() as h:
        auth = {"X-API-Key": ADMIN}
        resp = h.client.put("/v1/items/books-1", json={"available": False, "price": 3.5}, headers=auth)
        assert resp.status_code == 202 and resp.json()["accepted"] == 1
        topic, key, value = h.producer.messages[-1]
        assert (
            topic == h.settings.kafka.topics.items
            and key == b"books-1"
            and value is not None
            and b'"available":false' in value
        )
        assert_error(h.client.put("/v1/items/books-1", json={"price": -1}, headers=auth), 422)
        assert_error(h.client.put("/v1/items/books-1", json={"item_id": "other"}, headers=auth), 422)
        assert_error(h.client.put("/v1/items/books-1", json=[1], headers=auth), 422)


def test_cache_hit_then_new_event_is_reflected_at_once() -> None:
    with harness() as h:
        metrics = h.client.app.state.metrics  # type: ignore[attr-defined]
        first = h.recs("carol", k=3)
        time.sleep(0.1)  # the cache write is fire-and-forget
        second = h.recs("carol", k=3)
        assert second["items"] == first["items"]
        assert metrics.cache_hits._value.get() == 1
        h.realtime.record("carol", "tools-4")
        third = h.recs("carol", k=3)
        assert all(category_of(i["item_id"]) == "tools" for i in third["items"])
        assert metrics.cache_hits._value.get() == 1


def test_purchased_excluded_unless_asked() -> None:
    with harness() as h:
        top = h.recs("alice", k=1)["items"][0]["item_id"]
        h.realtime.record("alice", top, "purchase")
        assert top not in [i["item_id"] for i in h.recs("alice", k=5)["items"]]
        assert top in [i["item_id"] for i in h.recs("alice", k=5, include_purchased=True)["items"]]
        assert top not in [
            i["item_id"] for i in h.recs("alice", k=5, exclude=f"{top},x", include_purchased=True)["items"]
        ]
        cat = h.recs("alice", k=3, category="music")["items"]
        assert len(cat) == 3 and all(category_of(i["item_id"]) == "music" for i in cat)


def test_erasure_removes_state_cache_events_and_embedding_use() -> None:
    with harness() as h:
        h.events.insert_events(
            [
                {
                    "_id": "e1",
                    "event_id": "e1",
                    "user_id": "alice",
                    "item_id": "books-1",
                    "event_type": "click",
                    "timestamp": time.time(),
                }
            ]
        )
        h.impression_store.insert_impressions(
            [
                {"_id": "r1", "user_id": "alice", "ts": datetime.now(UTC), "items": []},
                {"_id": "r2", "user_id": "bob", "ts": datetime.now(UTC), "items": []},
            ]
        )
        h.realtime.record("alice", "books-3")
        h.recs("alice", k=3)
        time.sleep(0.1)
        resp = h.client.delete("/v1/users/alice", headers={"X-API-Key": ADMIN})
        assert resp.status_code == 200, resp.text
        deleted = resp.json()["deleted"]
        # recent, seen and marker (as Redis counts the user's keys)
        assert deleted == {
            "events": 1,
            "impressions": 1,
            "attributes": 0,
            "realtime_keys": 3,
            "cached_results": 1,
            "embeddings_suppressed": 1,
        }
        assert set(h.impression_store.docs) == {"r2"}  # what alice was shown is gone, nobody else's
        assert "alice" in h.events.erased_users()
        assert "alice" not in h.realtime.recent and not any(k[0] == "alice" for k in h.realtime.cache)
        after = h.recs("alice", k=3)
        assert all(i["reason"]["kind"] == "popular" for i in after["items"])


def test_mongo_down_breaks_admin_only() -> None:
    with harness() as h:
        h.events.fail_with = ConnectionError("mongo is down")
        h.retrain.fail_with = ConnectionError("mongo is down")
        assert h.recs("alice", k=2)["degraded"] is False
        assert_error(
            h.client.delete("/v1/users/alice", headers={"X-API-Key": ADMIN}), 503, "mongodb_unavailable"
        )
        assert_error(
            h.client.post("/v1/admin/retrain", headers={"X-API-Key": ADMIN}), 503, "mongodb_unavailable"
        )
        ready = h.get("/readyz").json()  # reads still work: MongoDB is reported, not required
        assert ready["ready"] is True and ready["checks"]["mongodb"].startswith("unreachable")


def test_model_info_retrain_and_metrics() -> None:
    with harness() as h:
        body = h.get("/v1/model").json()
        assert body["version"] == "1" and body["n_items"] == 40
        resp = h.client.post(
            "/v1/admin/retrain", json={"reason": "new catalog"}, headers={"X-API-Key": ADMIN}
        )
        assert resp.status_code == 202 and resp.json()["status"] == "pending"
        assert [r.reason for r in h.retrain.pending()] == ["new catalog"]
        health = h.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert health.headers["content-type"] == "application/json"
        ready = h.get("/readyz").json()
        assert ready["ready"] is True and ready["mode"] == "full"
        assert ready["checks"] == {"model": "ok (version 1)", "redis": "ok", "mongodb": "ok", "ingest": "ok"}
        h.recs("alice")
        text = h.get("/metrics").text
        for name in (
            "streamrec_serving_cache_hits_total",
            "streamrec_serving_cache_misses_total",
            "streamrec_serving_model_version 1.0",
            "streamrec_serving_model_load_failures_total",
            "streamrec_serving_degraded_responses_total",
            "http_request_duration_seconds",
        ):
            assert name in text


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs(path: str) -> None:
    with harness() as h:
        assert h.get(path).status_code == 200
