"""The Python client (streamrec_client) against the real API app: typed answers, typed errors with the
API's reason, ids kept as one path segment, retries for GETs only, sync and async alike."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from serving.app import create_app
from streamrec_client import (
    AsyncStreamrecClient,
    BadRequest,
    InvalidRequest,
    NotFound,
    StreamrecClient,
    TransportError,
    Unauthorized,
    Unavailable,
)
from streamrec_client import models as m
from tests.unit.test_serving_api import event
from tests.unit.test_serving_helpers import INGEST, READ, Harness, harness
from tooling.devstack.probes import free_port

# ------------------------------------------------------------------ against the app (TestClient)


def test_read_endpoints_answer_typed() -> None:
    with harness() as h:
        h.realtime.record("alice", "games-3")
        with StreamrecClient(http=h.client) as api:
            h.client.headers["X-API-Key"] = READ
            recs = api.recommendations("alice", 4, exclude=["books-0", "books-1"], category="books")
            assert isinstance(recs, m.Recommendations) and recs.model_version == "1"
            ids = [i.item_id for i in recs.items]
            assert len(ids) == 4 and not {"books-0", "books-1"} & set(ids)
            assert all(i.startswith("books-") for i in ids) and recs.items[0].reason.kind
            similar = api.similar("books-1", 3, user_id="alice", include_purchased=False)
            assert isinstance(similar, m.Similar) and len(similar.items) == 3
            assert similar.user_id == "alice" and "books-1" not in [i.item_id for i in similar.items]
            popular = api.popular(2, window="all")
            assert isinstance(popular, m.Popular) and popular.window == "all" and len(popular.items) == 2
            recent = api.recent("alice", 5)
            assert [(i.item_id, i.event_type) for i in recent.items] == [("games-3", "click")]
            page = api.rerank("alice", ["tools-1", "new-9", "books-3"], drop_unknown=True)
            assert isinstance(page, m.Reranked)
            assert [i.item_id for i in page.items] == ["books-3", "tools-1"] and page.unknown_item_ids == [
                "new-9"
            ]
            assert api.event_schema()["title"] == "streamrec interaction event v1"
            assert api.event_schema("items")["required"] == ["item_id"]


def test_errors_carry_the_apis_reason() -> None:
    with harness() as h, StreamrecClient(http=h.client, retries=1) as api:
        with pytest.raises(Unauthorized) as no_key:
            api.recommendations("alice")
        assert no_key.value.status == 401 and no_key.value.code == "unauthorized"
        h.client.headers["X-API-Key"] = READ
        with pytest.raises(InvalidRequest) as too_many:
            api.recommendations("alice", k=10_000)
        assert "at most 200" in too_many.value.message and too_many.value.request_id
        with pytest.raises(NotFound) as unknown:
            api.similar("no-such-item")
        assert unknown.value.code == "unknown_item" and "no-such-item" in unknown.value.message
        with pytest.raises(InvalidRequest, match=r"item_ids\.0: must not be blank"):
            api.rerank("alice", ["  "])


def test_ids_stay_one_path_segment() -> None:
    with harness(public_read=True) as h, StreamrecClient(http=h.client) as api:
        # ('/' is left out: Starlette decodes %2F before routing, so the API cannot address such an id.)
        for user in ("x?y=1#z", "with space", "50%", "ユーザー"):
            assert api.recommendations(user, 2).user_id == user
            assert api.rerank(user, ["books-1"]).user_id == user


def test_send_events_posts_a_batch_and_reports_refusals() -> None:
    with harness() as h, StreamrecClient(http=h.client) as api:
        h.client.headers["X-API-Key"] = INGEST
        accepted = api.send_events([event(1), event(2, event_type="like")])
        assert accepted.accepted == 1
        assert [(e.index, e.code) for e in accepted.errors] == [(1, "unknown_event_type")]
        assert [key for _, key, _ in h.producer.messages] == [b"u1"]


# ------------------------------------------------------------------ a live server (real sockets)


@contextmanager
def live(**serving: Any) -> Iterator[tuple[Harness, str]]:
    """The harness' twins behind uvicorn in a thread (the async client needs its own event loop)."""
    with harness(**serving) as h:
        app = create_app(h.settings, h.adapters(), snapshot_ttl_s=0.05)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield h, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(30)


def test_the_async_client_over_http() -> None:
    async def scenario(url: str) -> None:
        async with AsyncStreamrecClient(url, api_key=READ, timeout=5) as api:
            recs, popular = await asyncio.gather(
                api.recommendations("alice", 3), api.popular(2, window="all")
            )
            assert len(recs.items) == 3 and len(popular.items) == 2
            assert (await api.rerank("bob", ["books-1", "tools-2"])).items[0].item_id == "tools-2"
            assert "properties" in (await api.event_schema())
            trending, fresh = await asyncio.gather(api.trending(3), api.new_arrivals(3, brand="acme"))
            assert isinstance(trending, m.Trending) and isinstance(fresh, m.NewArrivals)
            with pytest.raises(BadRequest, match="malformed"):
                await api.popular(filter="colour:")
            with pytest.raises(NotFound):
                await api.similar("nope")
        async with AsyncStreamrecClient(url, api_key=INGEST) as api:
            stored = await api.set_shopper_attributes("carol", {"country": "NO"})
            assert (
                (await api.shopper_attributes("carol")).attributes == stored.attributes == {"country": "NO"}
            )
        async with AsyncStreamrecClient(url, api_key="wrong") as api:
            with pytest.raises(Unauthorized):
                await api.recent("alice")

    with live() as (h, url):
        h.wait_for_version(1)
        asyncio.run(scenario(url))
        with StreamrecClient(url, api_key=READ) as api:
            assert api.recommendations("alice", 2).items


def test_no_server_is_a_transport_error_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        StreamrecClient(url, timeout=1, retries=2) as api,
        pytest.raises(TransportError, match="ConnectError"),
    ):
        api.popular()


def test_a_get_is_tried_exactly_retries_times_then_raised() -> None:
    # A listener that accepts and hangs up at once: every attempt reaches it and fails, so the
    # count of accepted connections is the count of attempts (no clock involved).
    import socket

    accepted = 0
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        stop = threading.Event()

        def hang_up() -> None:
            nonlocal accepted
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                accepted += 1
                conn.close()

        worker = threading.Thread(target=hang_up, daemon=True)
        worker.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        try:
            with StreamrecClient(url, timeout=1, retries=3) as api, pytest.raises(TransportError):
                api.popular()
        finally:
            stop.set()
            worker.join(2)
    assert accepted == 3


# ------------------------------------------------------------------ the retry policy


class Flaky:
    """A transport answering with ``statuses`` in turn (then 200), counting the requests."""

    def __init__(self, *statuses: int | type[Exception]) -> None:
        self.statuses = list(statuses)
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.method)
        status = self.statuses.pop(0) if self.statuses else 200
        if not isinstance(status, int):
            raise status("boom", request=request)  # type: ignore[call-arg]
        if status == 200:
            body: dict[str, Any] = {
                "items": [],
                "window": "7d",
                "category": None,
                "model_version": None,
                "degraded": False,
                "request_id": "r",
            }
            return httpx.Response(200, json=body)
        return httpx.Response(
            status, json={"error": {"code": "unavailable", "message": "m", "request_id": "q"}}
        )


def mocked(flaky: Flaky) -> StreamrecClient:
    return StreamrecClient(http=httpx.Client(transport=httpx.MockTransport(flaky), base_url="http://x"))


def test_gets_are_retried_on_503_and_timeouts_posts_never() -> None:
    flaky = Flaky(503, httpx.ReadTimeout)
    assert mocked(flaky).popular().items == []
    assert flaky.requests == ["GET"] * 3
    once = Flaky(503)
    with pytest.raises(Unavailable) as exc:
        mocked(once).rerank("u", ["a"])
    assert once.requests == ["POST"] and exc.value.request_id == "q"
    always = Flaky(503, 503, 503, 503)
    with pytest.raises(Unavailable):
        mocked(always).popular()
    assert len(always.requests) == 3  # retries=3 attempts in all
    bad = Flaky(422)
    with pytest.raises(InvalidRequest):
        mocked(bad).popular()
    assert len(bad.requests) == 1  # a refusal is final
    # A PUT replaces the shopper's whole attribute set: sending it again is harmless, so it is retried.
    put = Flaky(503, 503, 503)
    with pytest.raises(Unavailable):
        mocked(put).set_shopper_attributes("u", {"country": "SE"})
    assert put.requests == ["PUT"] * 3
    timeouts = Flaky(httpx.ReadTimeout, httpx.ReadTimeout, httpx.ReadTimeout)
    with pytest.raises(TransportError, match="ReadTimeout"):
        mocked(timeouts).recommendations("u")
    assert len(timeouts.requests) == 3


def test_the_async_client_retries_the_same_way() -> None:
    async def scenario() -> None:
        flaky = Flaky(502, httpx.ConnectError)
        http = httpx.AsyncClient(transport=httpx.MockTransport(flaky), base_url="http://x")
        async with AsyncStreamrecClient(http=http) as api:
            assert (await api.popular()).items == []
            assert flaky.requests == ["GET"] * 3
        await http.aclose()

    asyncio.run(scenario())


# ------------------------------------------------------------------ the models follow the API


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (m.Recommendations, "RecommendationsOut"),
        (m.Similar, "SimilarOut"),
        (m.Popular, "PopularOut"),
        (m.Recent, "RecentOut"),
        (m.RecentItem, "RecentItem"),
        (m.Accepted, "AcceptedOut"),
        (m.EventError, "EventErrorOut"),
        (m.Reranked, "RerankOut"),
        (m.ScoredItem, "RerankItem"),
        (m.Reason, "Reason"),
        (m.RuleRef, "RuleRef"),
        (m.Trending, "TrendingOut"),
        (m.NewArrivals, "NewOut"),
        (m.Shopper, "ShopperOut"),
    ],
)
def test_the_client_models_have_the_apis_fields(model: type[Any], schema: str) -> None:
    with harness() as h:
        doc = h.client.get("/openapi.json").json()["components"]["schemas"][schema]
    assert set(model.model_fields) == set(doc["properties"])


# ------------------------------------------------------------------ the docs use the real names


def test_the_python_snippets_in_docs_clients_name_what_exists() -> None:
    import ast
    import re
    from pathlib import Path

    import streamrec_client
    from streamrec_client import EventProducer

    text = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    owners = {"api": StreamrecClient, "producer": EventProducer}
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module == "streamrec_client":
                assert all(hasattr(streamrec_client, a.name) for a in node.names), ast.dump(node)
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in owners
            ):
                assert hasattr(owners[node.value.id], node.attr), f"{node.value.id}.{node.attr}"
