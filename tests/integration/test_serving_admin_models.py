"""Promote and roll back over HTTP against the MongoDB model registry; serving follows by polling."""

from __future__ import annotations

import time
from typing import Any

from core.settings import Settings
from storage.model_registry_mongo import open_model_registry
from tests.integration.test_serving_api import AUTH, live_app, with_keys
from tests.unit.test_serving_helpers import model_files


def wait_for_version(client: Any, version: str, timeout_s: float = 30.0) -> None:
    holder = client.app.state.holder
    deadline = time.monotonic() + timeout_s
    while (holder.current.version if holder.current else None) != version:
        assert time.monotonic() < deadline, f"v{version} not loaded; holder has {holder.current}"
        time.sleep(0.05)


def test_promote_and_rollback_over_http(settings: Settings) -> None:
    settings = with_keys(settings)
    with live_app(settings) as client:
        first = client.app.state.holder.current.version  # type: ignore[attr-defined]
        registry = open_model_registry(settings)
        try:
            second = registry.publish(model_files(seed=1), {"metrics": {"ndcg@10": 0.4}})
        finally:
            registry.close()

        resp = client.post("/v1/admin/models/999/promote", headers=AUTH)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_model", resp.text
        # Too large for MongoDB to look up (8-byte ints): still "no such version", not an outage.
        resp = client.post(f"/v1/admin/models/{2**63}/promote", headers=AUTH)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_model", resp.text
        resp = client.post("/v1/admin/models/latest/promote", headers=AUTH)
        assert resp.status_code == 422, resp.text

        resp = client.post(f"/v1/admin/models/{second}/promote", json={"reason": "by hand"}, headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["version"] == str(second) and resp.json()["previous_version"] == first
        wait_for_version(client, str(second))
        assert client.get("/v1/model", headers=AUTH).json()["version"] == str(second)

        resp = client.post("/v1/admin/models/rollback", headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["version"] == first
        wait_for_version(client, first)
        resp = client.post("/v1/admin/models/rollback", headers=AUTH)
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "nothing_to_roll_back", resp.text

        registry = open_model_registry(settings)
        try:
            assert registry.get(second).status == "retired"
            assert registry.champion().version == int(first)  # type: ignore[union-attr]
        finally:
            registry.close()
