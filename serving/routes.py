"""HTTP routes. Handlers only parse and check parameters; the services hold the logic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from core.event_schema import ID_PATTERN
from core.settings import Settings
from serving.auth import auth_first, require
from serving.deps import AdminDep, IngestDep, ReadDep, SettingsDep, get_read, get_settings
from serving.discovery_routes import add_discovery_routes
from serving.errors import ApiError
from serving.fast_params import LeanRoute, openapi_parameters, parse_params
from serving.merch_params import BRAND_PATTERN, FILTER_DOC, FilterItem, MerchDep, lean_merch
from serving.merchandising import NO_MERCH
from serving.responses import FastJSONResponse
from serving.schemas import (
    AcceptedOut,
    ChampionIn,
    ChampionOut,
    ErasureOut,
    ErrorBody,
    EventBatchIn,
    ItemUpdateIn,
    ModelOut,
    PopularOut,
    RecentOut,
    RecommendationsOut,
    RetrainIn,
    RetrainOut,
    SimilarOut,
    errors,
)
from serving.service import RecsQuery

UserId = Annotated[str, Path(min_length=1, max_length=256)]
# Not blank and no control characters: what the item update validation accepts as an id (the event
# schema's own pattern). Documented only: core.events checks it, so a bad id gets its own reason code
# (control_character), not a generic one.
ItemId = Annotated[str, Path(min_length=1, max_length=256, json_schema_extra={"pattern": ID_PATTERN})]
K = Annotated[int, Query(ge=1, description="number of items; at most serving.max_k")]
Category = Annotated[str | None, Query(min_length=1, max_length=256)]
INCLUDE_PURCHASED_DOC = (
    "true: purchased items may be returned; false: they are not; unset: the exclusion policy decides "
    "(serving.exclusion.<surface>.purchased)"
)
EXCLUDE_SEEN_DOC = (
    "true: leave out every item the shopper ever interacted with; false: do not leave out recent "
    "interactions; unset: the exclusion policy decides (serving.exclusion.<surface>.recent)"
)
IncludePurchased = Annotated[bool | None, Query(description=INCLUDE_PURCHASED_DOC)]
ExcludeSeen = Annotated[bool | None, Query(description=EXCLUDE_SEEN_DOC)]
ShopperId = Annotated[
    str | None,
    Query(min_length=1, max_length=256, description="the shopper: their exclusions apply (policy 'similar')"),
]
Version = Annotated[int, Path(ge=1, description="a published model version")]
Limit = Annotated[int, Query(ge=1, description="number of items; at most serving.max_k")]
MAX_EXCLUDE = 1000
MAX_EXCLUDE_CHARS = 4096


def _check_k(settings: Settings, k: int) -> None:
    max_k = settings.serving.max_k
    if k > max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {max_k}, got {k}")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    mode: Literal["full", "degraded", "popularity", "unavailable"]
    checks: dict[str, str] = Field(
        description="model, redis, mongodb, ingest (Kafka producer): 'ok' or what is wrong"
    )


class NotReadyOut(ReadyOut):
    error: ErrorBody


class RecsParams(BaseModel):
    """Parameters of GET recommendations (validated by ``fast_params``: this is the hot route)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str = Field(min_length=1, max_length=256)
    k: int = Field(10, ge=1, description="number of items; at most serving.max_k")
    # The whole URL must stay under the HTTP server's request-line limit (64 KiB); 4096 characters
    # fit even when every one is percent-encoded UTF-8 (12 bytes), so what the document allows, the
    # server can receive.
    exclude: str | None = Field(None, max_length=MAX_EXCLUDE_CHARS, description="comma-separated item ids")
    category: str | None = Field(None, min_length=1, max_length=256)
    include_purchased: bool | None = Field(None, description=INCLUDE_PURCHASED_DOC)
    exclude_seen: bool | None = Field(None, description=EXCLUDE_SEEN_DOC)
    # Item filters (serving.merch_params checks them: a bad one is a 400 with the reason).
    price_min: float | None = Field(None, ge=0, description="only items priced at least this")
    price_max: float | None = Field(None, ge=0, description="only items priced at most this")
    brand: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="only items of this brand",
        json_schema_extra={"pattern": BRAND_PATTERN},
    )
    filter: list[FilterItem] | None = Field(None, description=FILTER_DOC)


RECS_PATH_FIELDS = frozenset({"user_id"})


async def recommendations(request: Request) -> Response:
    params = parse_params(RecsParams, request, RECS_PATH_FIELDS)
    _check_k(get_settings(request), params.k)
    excluded = frozenset(x for x in (params.exclude or "").split(",") if x)
    if len(excluded) > MAX_EXCLUDE:
        raise ApiError(
            422, "invalid_request", f"exclude lists at most {MAX_EXCLUDE} items, got {len(excluded)}"
        )
    query = RecsQuery(
        params.user_id,
        params.k,
        excluded,
        params.category,
        include_purchased=params.include_purchased,
        exclude_seen=params.exclude_seen,
        merch=lean_merch(request),
    )
    return FastJSONResponse(await get_read(request).recommendations(query))


async def similar(
    read: ReadDep,
    settings: SettingsDep,
    item_id: ItemId,
    k: K = 10,
    user_id: ShopperId = None,
    include_purchased: IncludePurchased = None,
    exclude_seen: ExcludeSeen = None,
    merch: MerchDep = NO_MERCH,
) -> Response:
    _check_k(settings, k)
    return FastJSONResponse(await read.similar(item_id, k, user_id, include_purchased, exclude_seen, merch))


async def recent(read: ReadDep, settings: SettingsDep, user_id: UserId, limit: Limit = 10) -> Response:
    max_k = settings.serving.max_k
    if limit > max_k:
        raise ApiError(422, "invalid_request", f"limit must be at most {max_k}, got {limit}")
    return FastJSONResponse(await read.recent(user_id, limit))


async def popular(
    read: ReadDep,
    settings: SettingsDep,
    k: K = 10,
    category: Category = None,
    window: Literal["1h", "7d", "all"] = "7d",
    merch: MerchDep = NO_MERCH,
) -> Response:
    _check_k(settings, k)
    return FastJSONResponse(await read.popular(k, window, category, merch))


async def post_events(
    ingest: IngestDep,
    body: Annotated[
        list[Any] | EventBatchIn,
        Body(description='a JSON array of events, or {"events": [...]}; at most serving.max_batch'),
    ],
) -> Response:
    events = body.events if isinstance(body, EventBatchIn) else body
    return FastJSONResponse(await ingest.ingest_events(events), status_code=202)


async def put_item(ingest: IngestDep, item_id: ItemId, body: ItemUpdateIn) -> Response:
    data: dict[str, Any] = body.model_dump(exclude_unset=True)
    return FastJSONResponse(await ingest.update_item(item_id, data), status_code=202)


async def erase_user(admin: AdminDep, user_id: UserId) -> Response:
    result = await admin.erase_user(user_id)
    # Results cached before the erasure carry an old marker; the cache entries are deleted as well.
    return FastJSONResponse(result)


async def model_info(admin: AdminDep) -> Response:
    return FastJSONResponse(admin.model_info())


async def promote(admin: AdminDep, version: Version, body: ChampionIn | None = None) -> Response:
    reason = body.reason if body is not None and body.reason else "promoted via API"
    return FastJSONResponse(await admin.promote(version, reason))


async def rollback(admin: AdminDep, body: ChampionIn | None = None) -> Response:
    reason = body.reason if body is not None and body.reason else "rolled back via API"
    return FastJSONResponse(await admin.rollback(reason))


async def retrain(admin: AdminDep, body: RetrainIn | None = None) -> Response:
    reason = body.reason if body is not None else "requested via API"
    return FastJSONResponse(await admin.request_retrain(reason), status_code=202)


async def healthz(request: Request) -> Response:
    # Liveness only: the event loop answers. Dependencies are /readyz's business. Served by LeanRoute
    # like the recommendations route, so the benchmark's framework ceiling (/healthz) goes through
    # the same machinery and the ratio of the two compares like with like.
    return FastJSONResponse({"status": "ok"})


async def readyz(admin: AdminDep) -> Response:
    state = await admin.readiness()
    body: dict[str, Any] = {"ready": state.ready, "mode": state.mode, "checks": state.checks}
    if state.ready:
        return FastJSONResponse(body)
    reasons = "; ".join(f"{name}: {value}" for name, value in state.checks.items() if value != "ok")
    return FastJSONResponse(
        {"error": {"code": "not_ready", "message": f"cannot answer requests: {reasons}"}, **body},
        status_code=503,
    )


def build_router(public_read: bool) -> APIRouter:
    """All routes; with public reads the read endpoints carry no auth dependency at all (it costs a
    dependency resolution per request, and its OpenAPI entry would wrongly ask for a key).

    ``responses`` lists every status each route can answer (the schema test holds the server to it):
    400 for a body or query the server cannot decode, 413 for an over-long body, 401/403 where a key
    is needed, 503 where a dependency may be down."""
    router = APIRouter()
    read = [] if public_read else [Depends(require("read"))]
    read_auth = () if public_read else (401, 403)
    router.add_api_route(
        "/v1/users/{user_id}/recommendations",
        recommendations,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": RecommendationsOut}, **errors(400, *read_auth, 413, 422)},
        dependencies=read,
        tags=["recommendations"],
        openapi_extra={"parameters": openapi_parameters(RecsParams, RECS_PATH_FIELDS)},
        route_class_override=LeanRoute,
    )
    router.add_api_route(
        "/v1/items/{item_id}/similar",
        similar,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": SimilarOut}, **errors(400, *read_auth, 404, 413, 422, 503)},
        dependencies=read,
        tags=["recommendations"],
    )
    router.add_api_route(
        "/v1/users/{user_id}/recent",
        recent,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": RecentOut}, **errors(400, *read_auth, 413, 422)},
        dependencies=read,
        tags=["recommendations"],
        summary="Recently viewed: the shopper's recent distinct items, newest first",
    )
    router.add_api_route(
        "/v1/popular",
        popular,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": PopularOut}, **errors(400, *read_auth, 413, 422)},
        dependencies=read,
        tags=["recommendations"],
    )
    add_discovery_routes(router, read, read_auth)
    router.add_api_route(
        "/v1/events",
        post_events,
        methods=["POST"],
        response_model=None,
        status_code=202,
        responses={202: {"model": AcceptedOut}, **errors(400, 401, 403, 413, 422, 503)},
        dependencies=[Depends(require("ingest"))],
        tags=["ingest"],
        route_class_override=auth_first("ingest"),
    )
    router.add_api_route(
        "/v1/items/{item_id}",
        put_item,
        methods=["PUT"],
        response_model=None,
        status_code=202,
        responses={202: {"model": AcceptedOut}, **errors(400, 401, 403, 413, 422, 503)},
        dependencies=[Depends(require("ingest"))],
        tags=["ingest"],
        route_class_override=auth_first("ingest"),
    )
    router.add_api_route(
        "/v1/users/{user_id}",
        erase_user,
        methods=["DELETE"],
        response_model=None,
        responses={200: {"model": ErasureOut}, **errors(400, 401, 403, 413, 422, 503)},
        dependencies=[Depends(require("admin"))],
        tags=["admin"],
        route_class_override=auth_first("admin"),
    )
    router.add_api_route(
        "/v1/model",
        model_info,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": ModelOut}, **errors(400, *read_auth, 413, 503)},
        dependencies=read,
        tags=["admin"],
    )
    router.add_api_route(
        "/v1/admin/retrain",
        retrain,
        methods=["POST"],
        response_model=None,
        status_code=202,
        responses={202: {"model": RetrainOut}, **errors(400, 401, 403, 413, 422, 503)},
        dependencies=[Depends(require("admin"))],
        tags=["admin"],
        route_class_override=auth_first("admin"),
    )
    router.add_api_route(
        "/v1/admin/models/{version}/promote",
        promote,
        methods=["POST"],
        response_model=None,
        responses={200: {"model": ChampionOut}, **errors(400, 401, 403, 404, 409, 413, 422, 503)},
        dependencies=[Depends(require("admin"))],
        tags=["admin"],
        route_class_override=auth_first("admin"),
        summary="Make a published version the champion (every replica loads it within a model poll)",
    )
    router.add_api_route(
        "/v1/admin/models/rollback",
        rollback,
        methods=["POST"],
        response_model=None,
        responses={200: {"model": ChampionOut}, **errors(400, 401, 403, 409, 413, 422, 503)},
        dependencies=[Depends(require("admin"))],
        tags=["admin"],
        route_class_override=auth_first("admin"),
        summary="Make the previous champion the champion again",
    )
    router.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": HealthOut, "description": "the process is alive"}, **errors(400, 413)},
        summary="Liveness: the process answers (restart it when this fails)",
        tags=["ops"],
        route_class_override=LeanRoute,
    )
    router.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=None,
        responses={
            200: {"model": ReadyOut, "description": "can answer recommendations (maybe degraded)"},
            503: {"model": NotReadyOut, "description": "cannot answer recommendations at all"},
            **errors(400, 413),
        },
        summary="Readiness: can answer recommendations; checks report each dependency",
        tags=["ops"],
    )
    return router
