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
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from serving.auth import require
from serving.deps import HolderDep, MetricsDep, ReadDep, RecentUsersDep, SnapshotsDep
from serving.errors import ApiError
from serving.responses import FastJSONResponse

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
MAX_USERS = 50
MAX_ITEMS = 100

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def page_html() -> str:
    return (STATIC_DIR / "demo.html").read_text(encoding="utf-8")


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
async def demo_users(
    source: RecentUsersDep, limit: Annotated[int, Query(ge=1, le=MAX_USERS)] = 8
) -> Response:
    if source is None:
        raise ApiError(503, "mongodb_unavailable", "cannot list recent users: this app has no event store")
    try:
        users = await run_in_threadpool(source.recent_users, limit)
    except Exception as exc:
        raise ApiError(503, "mongodb_unavailable", f"cannot list recent users: {exc}") from exc
    return FastJSONResponse({"users": users})


@router.get("/demo/api/items", response_model=None, dependencies=[Depends(require("read"))])
async def demo_items(
    read: ReadDep,
    ids: Annotated[str, Query(min_length=1, max_length=30_000, description="comma-separated item ids")],
) -> Response:
    wanted = [i for i in dict.fromkeys(ids.split(",")) if i]
    if len(wanted) > MAX_ITEMS:
        raise ApiError(422, "invalid_request", f"ids lists at most {MAX_ITEMS} items, got {len(wanted)}")
    reader = read.reader
    try:
        found = await asyncio.gather(*(reader.item(i) for i in wanted))
    except Exception as exc:
        raise ApiError(503, "redis_unavailable", f"cannot read the catalog: {exc}") from exc
    return FastJSONResponse({"items": {i: f for i, f in zip(wanted, found, strict=True) if f}})


@router.get("/demo/api/stats", response_model=None, dependencies=[Depends(require("read"))])
async def demo_stats(metrics: MetricsDep, holder: HolderDep, snapshots: SnapshotsDep) -> Response:
    loaded = holder.current
    hits = counter_total(metrics.registry, "streamrec_serving_cache_hits")
    misses = counter_total(metrics.registry, "streamrec_serving_cache_misses")
    body: dict[str, Any] = {
        "model_version": loaded.version if loaded is not None else None,
        "model_items": loaded.model.n_items if loaded is not None else None,
        "requests": int(counter_total(metrics.registry, "http_requests")),
        "recommendations": int(hits + misses),
        "cache_hit_rate": hits / (hits + misses) if hits + misses else None,
        "degraded_responses": int(counter_total(metrics.registry, "streamrec_serving_degraded_responses")),
        "redis_ok": bool(snapshots.healthy),
    }
    return FastJSONResponse(body)
