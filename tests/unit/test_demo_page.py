"""The demo page router, served by the real app factory with the in-memory twins."""

from __future__ import annotations

from pathlib import Path

from serving.demo_page import STATIC_DIR
from storage.event_docs import distinct_in_order
from tests.unit.test_serving_helpers import READ, harness


class FakeUsers:
    def __init__(self, users: list[str], fail: bool = False) -> None:
        self.users = users
        self.fail = fail
        self.asked: list[int] = []

    def recent_users(self, limit: int) -> list[str]:
        self.asked.append(limit)
        if self.fail:
            raise ConnectionError("mongo down")
        return self.users[:limit]


def test_the_demo_page_is_mounted_only_when_the_setting_says_so() -> None:
    with harness() as h:  # STREAMREC_SERVING__DEMO_PAGE defaults to false, as in production
        assert h.client.get("/demo").status_code == 404
        assert h.get("/demo/api/users").status_code == 404
        assert h.client.get("/healthz").status_code == 200


def test_page_is_served_without_key_and_uses_no_external_resources() -> None:
    with harness(demo_page=True) as h:
        resp = h.client.get("/demo")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/html")
        html = resp.text
        assert "/v1/events" in html and "/demo/api/users" in html and "X-API-Key" in html
        # Offline machines: nothing may come from a CDN.
        assert "http://" not in html and "https://" not in html
        # Not part of the public API document.
        assert "/demo" not in h.client.get("/openapi.json").text


def test_static_file_ships_inside_the_serving_package() -> None:
    assert (STATIC_DIR / "demo.html").is_file()
    assert Path(STATIC_DIR).parent.name == "serving"


def test_users_endpoint() -> None:
    fake = FakeUsers(["u3", "u1", "u2"])
    with harness(recent_users=fake, demo_page=True) as h:
        assert h.get("/demo/api/users", limit=2).json() == {"users": ["u3", "u1"]}
        assert h.get("/demo/api/users", key=None).status_code == 401  # read scope, like every read endpoint
        assert h.get("/demo/api/users", limit=0).status_code == 422
        fake.fail = True
        resp = h.get("/demo/api/users")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "mongodb_unavailable"


def test_users_endpoint_without_a_source_answers_503() -> None:
    with harness(demo_page=True) as h:
        resp = h.get("/demo/api/users")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "mongodb_unavailable"


def test_items_endpoint_returns_catalog_entries() -> None:
    with harness(demo_page=True) as h:
        h.realtime.set_item("books-1", category="books", title="A Book")
        body = h.get("/demo/api/items", ids="books-1,unknown,books-1").json()
        assert body == {"items": {"books-1": {"title": "A Book", "available": "1", "category": "books"}}}
        too_many = ",".join(f"i{n}" for n in range(101))
        assert h.get("/demo/api/items", ids=too_many).status_code == 422
        h.realtime.up = False
        assert h.get("/demo/api/items", ids="books-1").status_code == 503


def test_stats_count_requests_and_show_the_model() -> None:
    with harness(demo_page=True) as h:
        h.recs("alice")
        h.recs("alice")
        stats = h.get("/demo/api/stats").json()
        assert stats["model_version"] == "1"
        assert stats["model_items"] > 0
        assert stats["recommendations"] == 2
        assert stats["requests"] >= 2
        assert stats["degraded_responses"] == 0
        assert stats["redis_ok"] is True
        h.realtime.up = False
        h.recs("alice")
        assert h.get("/demo/api/stats", key=READ).json()["degraded_responses"] == 1


def test_distinct_in_order() -> None:
    assert distinct_in_order(["b", "a", "b", "c"], 2) == ["b", "a"]
