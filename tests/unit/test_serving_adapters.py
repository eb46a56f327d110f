"""The app owns the adapters it is handed: its lifespan closes them, last opened first."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.app import create_app
from tests.unit.test_serving_helpers import harness


def test_lifespan_closes_the_adapters_in_reverse_order_once() -> None:
    closed: list[str] = []

    async def close_async() -> None:
        closed.append("redis")

    def close_failing() -> None:
        closed.append("kafka")
        raise RuntimeError("already gone")  # logged; the others are still closed

    with harness() as h:
        adapters = h.adapters()
        adapters.closers = [lambda: closed.append("mongo"), close_failing, close_async]
        app = create_app(h.settings, adapters)
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            assert closed == []
        assert closed == ["redis", "kafka", "mongo"]
        assert adapters.closers == []
