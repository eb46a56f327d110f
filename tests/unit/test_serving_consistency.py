"""Serving consistency with in-memory twins: cached answers follow the catalog, erasure reaches
every replica, auth comes before the body, request ids, JSON log lines, the OpenAPI limits."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from cli.context import configure_logging
from serving.app import create_app
from tests.unit.test_serving_helpers import ADMIN, INGEST, READ, Harness, harness

R = {"X-API-Key": READ}


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def wait_until(check: Callable[[], bool], timeout_s: float = 2.0) -> float:
    """Seconds until ``check()`` held; fails after ``timeout_s``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s}s"
        time.sleep(0.02)
    return time.monotonic() - start


@contextmanager
def replica(h: Harness, **kwargs: Any) -> Iterator[TestClient]:
    """A second serving app on the same twins (another replica behind the load balancer)."""
    app = create_app(h.settings, h.adapters(), **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_until(lambda: app.state.holder.current is not None, 10)
        yield client


def test_item_made_unavailable_leaves_cached_and_uncached_answers() -> None:
    with harness() as h, replica(h, snapshot_ttl_s=3600, sync_poll_s=0.05) as api:
        # A long snapshot TTL: only the catalog version poll can make this pass in time.
        metrics = api.app.state.metrics  # type: ignore[attr-defined]
        first = api.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json()
        wait_until(lambda: any(key[0] == "alice" for key in h.realtime.cache))
        again = api.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json()
        assert again["items"] == first["items"]
        assert metrics.cache_hits._value.get() == 1
        gone = ids(first)[0]
        assert gone in ids(api.get(f"/v1/items/{ids(first)[1]}/similar", params={"k": 9}, headers=R).json())
        assert gone in ids(api.get("/v1/popular", params={"k": 40, "window": "all"}, headers=R).json())

        h.realtime.set_item(gone, category="books", available=False)

        def everywhere_gone() -> bool:
            recs = api.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json()
            sim = api.get(f"/v1/items/{ids(first)[1]}/similar", params={"k": 9}, headers=R).json()
            pop = api.get("/v1/popular", params={"k": 40, "window": "all"}, headers=R).json()
            return all(gone not in ids(body) for body in (recs, sim, pop)) and len(ids(recs)) == 3

        wait_until(everywhere_gone)
        # Back in stock: it may be recommended again (the cache does not pin the old answer).
        h.realtime.set_item(gone, category="books", available=True)
        wait_until(
            lambda: gone in ids(api.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json())
        )


def test_erasure_on_one_replica_reaches_the_other() -> None:
    with harness() as h, replica(h, sync_poll_s=0.05) as other:
        personal = other.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json()
        assert personal["items"][0]["reason"]["kind"] == "personalized"
        wait_until(lambda: any(key[0] == "alice" for key in h.realtime.cache))
        resp = h.client.delete("/v1/users/alice", headers={"X-API-Key": ADMIN})
        assert resp.status_code == 200, resp.text

        def unknown_on_other() -> bool:
            body = other.get("/v1/users/alice/recommendations", params={"k": 3}, headers=R).json()
            return all(i["reason"]["kind"] == "popular" for i in body["items"])

        wait_until(unknown_on_other)
        assert other.app.state.holder.is_erased("alice")  # type: ignore[attr-defined]


def test_erased_user_never_gets_a_cached_answer_written_before_the_erasure() -> None:
    """A replica that computed alice's answer just before the DELETE may store it after the keys
    were deleted; once the replica knows of the erasure it must not serve that entry."""
    with harness() as h:
        h.recs("alice", k=3)
        wait_until(lambda: any(key[0] == "alice" for key in h.realtime.cache))
        stale = dict(h.realtime.cache)
        h.client.app.state.holder.mark_erased("alice")  # type: ignore[attr-defined]
        h.realtime.cache.update(stale)  # the late write
        body = h.recs("alice", k=3)
        assert all(i["reason"]["kind"] == "popular" for i in body["items"])


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v1/events"), ("put", "/v1/items/books-1"), ("post", "/v1/admin/retrain")],
)
def test_auth_is_checked_before_the_body_is_parsed(method: str, path: str) -> None:
    with harness() as h:
        send = getattr(h.client, method)
        for body in (b"{not json", b"\xff\xfe", b'{"title": 5, "bogus": 1}'):
            no_key = send(path, content=body, headers={"Content-Type": "application/json"})
            assert no_key.status_code == 401, (body, no_key.text)
            read_key = send(path, content=body, headers={**R, "Content-Type": "application/json"})
            assert read_key.status_code == 403, (body, read_key.text)
        bearer = send(path, content=b"{not json", headers={"Authorization": f"Bearer {ADMIN}"})
        assert bearer.status_code == 422  # the key is good: now the body is judged


def test_non_utf8_body_is_a_documented_400() -> None:
    with harness() as h:
        resp = h.client.post(
            "/v1/events",
            content=b'["\xff"]',
            headers={"X-API-Key": INGEST, "Content-Type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["request_id"] == resp.headers["x-request-id"]
        doc = h.client.get("/openapi.json").json()
        assert "400" in doc["paths"]["/v1/events"]["post"]["responses"]


def test_request_id_header_echo_and_replacement() -> None:
    with harness() as h:
        echoed = h.client.get("/v1/popular", headers={**R, "X-Request-ID": "lb-42.a:b"})
        assert echoed.headers["x-request-id"] == "lb-42.a:b"
        assert echoed.json()["request_id"] == "lb-42.a:b"
        for bad in ('a"b', "x" * 200, "a b", "é"):
            resp = h.client.get("/v1/popular", headers=[("X-API-Key", READ), ("X-Request-ID", bad.encode())])
            assert resp.headers["x-request-id"] != bad and len(resp.headers["x-request-id"]) == 32
        fresh = {h.client.get("/v1/popular", headers=R).headers["x-request-id"] for _ in range(3)}
        assert len(fresh) == 3
        # Errors answered before any route (413 from the body limit) carry an id too.
        big = h.client.post(
            "/v1/events", content=b"[" + b"1," * 2_000_000 + b"1]", headers={"X-API-Key": INGEST}
        )
        assert big.status_code == 413 and big.json()["error"]["request_id"] == big.headers["x-request-id"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """configure_logging's handler, writing into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_log_injection_stays_one_json_line(json_log: io.StringIO) -> None:
    log = logging.getLogger("serving.test")
    evil = 'a\nb" level=ERROR fake="1\r\u2028{"x":1}'
    log.info("event=user_erased user_id=%s", evil)
    log.warning(evil)
    lines = json_log.getvalue().splitlines()  # splitlines also splits on U+2028
    assert len(lines) == 2, lines
    first = orjson.loads(lines[0])
    assert first["message"] == f"event=user_erased user_id={evil}"
    assert first["level"] == "INFO" and first["logger"] == "serving.test" and first["request_id"] is None


def test_log_records_of_a_request_carry_its_id(json_log: io.StringIO) -> None:
    with harness() as h:
        json_log.seek(0)
        json_log.truncate()
        resp = h.client.delete("/v1/users/eve%0Ax", headers={"X-API-Key": ADMIN, "X-Request-ID": "req-7"})
        assert resp.status_code == 200, resp.text
    records = [orjson.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    erased = [r for r in records if "event=user_erased" in r["message"]]
    assert len(erased) == 1 and erased[0]["request_id"] == "req-7"
    assert "user_id=eve\nx" in erased[0]["message"]


def test_openapi_states_the_limits_the_server_enforces() -> None:
    with harness(max_k=50, max_batch=7) as h:
        doc = h.client.get("/openapi.json").json()
        paths = doc["paths"]
        for path in ("/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/similar", "/v1/popular"):
            (k,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "k"]
            assert k["schema"]["maximum"] == 50
            assert (
                h.get(path.replace("{user_id}", "alice").replace("{item_id}", "books-1"), k=51).status_code
                == 422
            )
        item = doc["components"]["schemas"]["ItemUpdateIn"]
        assert item["additionalProperties"] is False
        bogus = h.client.put("/v1/items/books-1", json={"bogus": 1}, headers={"X-API-Key": INGEST})
        assert bogus.status_code == 422
        dollar = h.client.put(
            "/v1/items/books-1", json={"properties": {"$where": 1}}, headers={"X-API-Key": INGEST}
        )
        assert dollar.status_code == 422
        events = paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert [o.get("maxItems") for o in events["anyOf"] if o.get("type") == "array"] == [7]
        assert doc["components"]["schemas"]["EventBatchIn"]["properties"]["events"]["maxItems"] == 7
        assert "application/json" in paths["/healthz"]["get"]["responses"]["200"]["content"]
        assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
        for path, ops in paths.items():
            for method, op in ops.items():
                assert "400" in op["responses"] and "413" in op["responses"], (method, path)


def test_cache_entries_carry_their_own_expiry() -> None:
    from core.cache_payload import cache_entry, split_cached

    entry = cache_entry(3, 60, b"[1]", now_ms=1_000)
    assert split_cached(entry, 3, now_ms=1_000) == b"[1]"
    assert split_cached(entry, 3, now_ms=60_999) == b"[1]"
    assert split_cached(entry, 3, now_ms=61_000) is None  # expired, though the hash key lives on
    assert split_cached(entry, 4, now_ms=1_000) is None  # the user's state changed since
    for broken in (b"", b"3", b"3:", b"3:x:[1]", b"x:1:[1]"):
        assert split_cached(broken, 3, now_ms=0) is None


def test_replica_sync_retries_a_catalog_refetch_that_failed() -> None:
    import asyncio

    from serving.popularity import RealtimeSnapshots
    from serving.replica_sync import ReplicaSyncer
    from storage.errors import RealtimeUnavailable
    from storage.realtime_reader_twin import InMemoryRealtimeReader

    class Holder:
        def __init__(self) -> None:
            self.erased: list[str] = []

        def mark_erased(self, user_id: str) -> None:
            self.erased.append(user_id)

    async def scenario() -> None:
        reader = InMemoryRealtimeReader()
        snapshots = RealtimeSnapshots(reader, ttl_s=3600)
        holder = Holder()
        syncer = ReplicaSyncer(reader, snapshots, holder)  # type: ignore[arg-type]
        await syncer.sync_once()
        empty_tag = snapshots.catalog_tag
        reader.set_item("i1", available=False)
        await reader.erase_user("u1")
        original = reader.unavailable

        async def down() -> frozenset[str]:
            raise RealtimeUnavailable("down")

        reader.unavailable = down  # type: ignore[method-assign]
        with pytest.raises(RealtimeUnavailable):
            await syncer.sync_once()
        assert holder.erased == ["u1"]  # erasures are applied before the refetch is tried
        assert snapshots.catalog_tag == empty_tag
        reader.unavailable = original  # type: ignore[method-assign]
        await syncer.sync_once()
        assert await snapshots.unavailable() == {"i1"} and snapshots.catalog_tag != empty_tag
        await syncer.sync_once()
        assert holder.erased == ["u1"]  # each erasure is delivered once

    asyncio.run(scenario())


def test_unexpected_error_answer_and_log_carry_the_request_id(json_log: io.StringIO) -> None:
    with harness() as h:

        async def boom(*_: Any) -> Any:
            raise RuntimeError("bug")

        h.client.app.state.read.recommendations = boom  # type: ignore[attr-defined]
        resp = h.client.get("/v1/users/alice/recommendations", headers={**R, "X-Request-ID": "req-500"})
    assert resp.status_code == 500
    assert resp.json()["error"]["request_id"] == "req-500" == resp.headers["x-request-id"]
    records = [orjson.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    assert any(r["request_id"] == "req-500" and "unhandled_error" in r["message"] for r in records)


def test_log_lines_drop_terminal_colour_extras(json_log: io.StringIO) -> None:
    # Any logger: uvicorn's own may have propagation switched off by an earlier in-process server.
    logging.getLogger("serving.test_colour").info(
        "Started %s", "x", extra={"color_message": "\x1b[36m%s\x1b[0m"}
    )
    (line,) = json_log.getvalue().splitlines()
    assert orjson.loads(line)["message"] == "Started x" and "color_message" not in line
