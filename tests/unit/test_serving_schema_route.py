"""GET /v1/schema/events and /v1/schema/items: the committed schemas, public, cacheable."""

from __future__ import annotations

import json

from core.event_schema import interaction_schema, item_update_schema
from tests.unit.test_serving_helpers import harness
from tooling.event_schema import SCHEMA_DIR


def test_the_schemas_are_served_publicly_with_an_etag() -> None:
    with harness(public_read=False) as h:  # read endpoints need a key; the schema does not
        for path, build, name in (
            ("/v1/schema/events", interaction_schema, "event-v1.json"),
            ("/v1/schema/items", item_update_schema, "item-update-v1.json"),
        ):
            resp = h.get(path, key=None)
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"] == "application/schema+json"
            assert resp.json() == build() == json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
            assert resp.headers["cache-control"] == "public, max-age=86400"
            etag = resp.headers["etag"]
            again = h.client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
            assert h.client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200
        assert h.get("/v1/schema/events", key=None).headers["etag"] != resp.headers["etag"]


def test_the_schema_routes_are_in_the_openapi_document() -> None:
    with harness() as h:
        paths = h.client.get("/openapi.json").json()["paths"]
        for path in ("/v1/schema/events", "/v1/schema/items"):
            op = paths[path]["get"]
            assert "application/schema+json" in op["responses"]["200"]["content"]
            assert "security" not in op
