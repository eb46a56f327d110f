"""POST /v1/admin/models/{version}/promote and /rollback over the in-memory registry twin."""

from __future__ import annotations

from typing import Any

from storage.model_erasure import erasure_digest
from tests.unit.test_serving_api import assert_error
from tests.unit.test_serving_helpers import ADMIN, READ, harness, model_files

AUTH = {"X-API-Key": ADMIN}


def promote(h: Any, version: object, key: str | None = ADMIN, **body: Any) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return h.client.post(f"/v1/admin/models/{version}/promote", json=body or None, headers=headers)


def rollback(h: Any, **body: Any) -> Any:
    return h.client.post("/v1/admin/models/rollback", json=body or None, headers=AUTH)


def test_promote_then_rollback_and_serving_follows() -> None:
    with harness() as h:
        v2 = h.registry.publish(model_files(seed=1), {"metrics": {"ndcg@10": 0.4}})
        h.events.erase_user("zed")
        resp = promote(h, v2, reason="better on the new catalog")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["loaded_version"] in ("1", str(v2))  # this replica's next poll may already have run
        assert body == {
            "version": str(v2),
            "previous_version": "1",
            "reason": "better on the new catalog",
            "loaded_version": body["loaded_version"],
        }
        assert h.registry.champion().version == v2  # type: ignore[union-attr]
        # Brought back only after being checked against the erasures, as the CLI does.
        assert h.registry.get(v2).erasure["digest"] == erasure_digest({"zed"})
        h.wait_for_version(v2)  # through the usual model polling

        resp = rollback(h)
        assert resp.status_code == 200, resp.text
        assert resp.json()["version"] == "1" and resp.json()["previous_version"] == str(v2)
        assert h.registry.get(v2).status == "retired"
        h.wait_for_version(1)
        assert_error(rollback(h), 409, "nothing_to_roll_back")


def test_promote_refuses_unknown_bad_and_corrupt_versions() -> None:
    with harness() as h:
        assert_error(promote(h, 99), 404, "unknown_model")
        for bad in ("abc", 0, -1, "1.5"):
            assert_error(promote(h, bad), 422, "invalid_request")
        assert_error(promote(h, 1, reason="x" * 2000), 422, "invalid_request")
        v2 = h.registry.publish(model_files(seed=1), {})
        h.registry._files[v2]["model.json"] = b"not what was published"
        assert_error(promote(h, v2), 409, "artifact_unavailable")
        assert h.registry.champion().version == 1  # type: ignore[union-attr]
        # Promoting the champion again changes nothing.
        assert promote(h, 1).json()["previous_version"] == "1"


def test_model_changes_need_the_admin_key_and_mongodb() -> None:
    with harness() as h:
        assert_error(promote(h, 1, key=None), 401, "unauthorized")
        assert_error(promote(h, 1, key=READ), 403, "forbidden")
        resp = h.client.post("/v1/admin/models/rollback", headers={"X-API-Key": READ})
        assert_error(resp, 403, "forbidden")
        h.events.fail_with = ConnectionError("mongo is down")
        assert_error(promote(h, 1), 503, "mongodb_unavailable")
        assert_error(rollback(h), 503, "mongodb_unavailable")
