"""The demo storefront at ``/demo``: one static page (no build step, no CDN) plus three small JSON helpers.

The page itself talks to the public API (recommendations, ``POST /v1/events``, popular items); the
helpers under ``/demo/api`` give it what the public API does not: user ids with recent activity (for
the picker), catalog entries (titles) and a few live figures. They need the ``read`` scope like every
read endpoint and are left out of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from core.settings import MongoSettings
from serving.auth import require
from serving.errors import ApiError
from serving.responses import FastJSONResponse

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
MAX_USERS = 50
MAX_ITEMS = 100

router = APIRouter(include_in_schema=False)


class RecentUsers(Protocol):
    def recent_users(self, limit: int) -> list[str]:
        """Distinct user ids of the newest events, newest first."""
        ...


class MongoRecentUsers:
    """The newest events' users, from the event store (``ts`` is indexed)."""

    def __init__(self, settings: MongoSettings) -> None:
        from storage.event_store import MongoEventStore

        self._store = MongoEventStore.from_settings(settings)

    def recent_users(self, limit: int) -> list[str]:
        return self._store.recent_users(limit)

    def close(self) -> None:
        self._store.close()


@lru_cache(maxsize=1)
def page_html() -> str:
    return (STATIC_DIR / "demo.html").read_text(encoding="utf-8")


def _recent_users(request: Request) -> RecentUsers:
    state = request.app.state
    source: RecentUsers | None = getattr(state, "demo_users", None)
    if source is None:
        # Built on first use: an API that never serves the demo page opens no extra connection.
        source = MongoRecentUsers(state.settings.mongo)
        state.demo_users = source
    return source


def counter_total(registry: CollectorRegistry, name: str) -> float:
    """Sum of every sample of counter ``name`` (all label values), 0 when it is absent."""
    total = 0.0
    for metric in registry.collect():
        if metric.name == name:
            total += sum(s.value for s in metric.samples if s.name == f"{name}_total")
    return total


@router.get("/demo", response_model=None)
async def demo_page() -> Response:
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})


@router.get("/demo/api/users", response_model=None, dependencies=[Depends(require("read"))])
async def demo_users(request: Request, limit: Annotated[int, Query(ge=1, le=MAX_USERS)] = 8) -> Response:
    source = _recent_users(request)
    try:
        users = await run_in_threadpool(source.recent_users, limit)
    except Exception as exc:
        raise ApiError(503, "mongodb_unavailable", f"cannot list recent users: {exc}") from exc
    return FastJSONResponse({"users": users})


@router.get("/demo/api/items", response_model=None, dependencies=[Depends(require("read"))])
async def demo_items(
    request: Request,
    ids: Annotated[str, Query(min_length=1, max_length=30_000, description="comma-separated item ids")],
) -> Response:
    wanted = [i for i in dict.fromkeys(ids.split(",")) if i]
    if len(wanted) > MAX_ITEMS:
        raise ApiError(422, "invalid_request", f"ids lists at most {MAX_ITEMS} items, got {len(wanted)}")
    reader = request.app.state.read.reader
    try:
        found = await asyncio.gather(*(reader.item(i) for i in wanted))
    except Exception as exc:
        raise ApiError(503, "redis_unavailable", f"cannot read the catalog: {exc}") from exc
    return FastJSONResponse({"items": {i: f for i, f in zip(wanted, found, strict=True) if f}})


@router.get("/demo/api/stats", response_model=None, dependencies=[Depends(require("read"))])
async def demo_stats(request: Request) -> Response:
    state = request.app.state
    metrics = state.metrics
    loaded = state.holder.current if hasattr(state, "holder") else None
    hits = counter_total(metrics.registry, "streamrec_serving_cache_hits")
    misses = counter_total(metrics.registry, "streamrec_serving_cache_misses")
    snapshots = getattr(state, "snapshots", None)
    body: dict[str, Any] = {
        "model_version": loaded.version if loaded is not None else None,
        "model_items": loaded.model.n_items if loaded is not None else None,
        "requests": int(counter_total(metrics.registry, "http_requests")),
        "recommendations": int(hits + misses),
        "cache_hit_rate": hits / (hits + misses) if hits + misses else None,
        "degraded_responses": int(counter_total(metrics.registry, "streamrec_serving_degraded_responses")),
        "redis_ok": bool(snapshots.healthy) if snapshots is not None else None,
    }
    return FastJSONResponse(body)
