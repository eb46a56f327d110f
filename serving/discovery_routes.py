"""Routes of the discovery lists (``serving.discovery``): trending and new arrivals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from serving.deps import DiscoveryDep, SettingsDep
from serving.errors import ApiError
from serving.merch_params import MerchDep
from serving.merchandising import NO_MERCH
from serving.responses import FastJSONResponse
from serving.schemas import NewOut, TrendingOut, errors

K = Annotated[int, Query(ge=1, description="number of items; at most serving.max_k")]
Category = Annotated[
    str | None, Query(min_length=1, max_length=256, description="only items of this category")
]
Shopper = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=256,
        description="the shopper: items with a model embedding are re-ordered by theirs (see the reasons)",
    ),
]


def _check_k(settings: Any, k: int) -> None:
    max_k = settings.serving.max_k
    if k > max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {max_k}, got {k}")


async def trending(
    discovery: DiscoveryDep,
    settings: SettingsDep,
    k: K = 10,
    category: Category = None,
    merch: MerchDep = NO_MERCH,
) -> Response:
    _check_k(settings, k)
    return FastJSONResponse(await discovery.trending(k, category, merch))


async def new_arrivals(
    discovery: DiscoveryDep,
    settings: SettingsDep,
    k: K = 10,
    category: Category = None,
    user_id: Shopper = None,
    merch: MerchDep = NO_MERCH,
) -> Response:
    _check_k(settings, k)
    return FastJSONResponse(await discovery.new(k, category, user_id, merch))


def add_discovery_routes(router: APIRouter, read: Sequence[Any], read_auth: tuple[int, ...]) -> None:
    router.add_api_route(
        "/v1/trending",
        trending,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": TrendingOut}, **errors(400, *read_auth, 413, 422)},
        dependencies=list(read),
        tags=["recommendations"],
        summary="Trending: items whose short-window rate grew most against their long-window rate",
    )
    router.add_api_route(
        "/v1/new",
        new_arrivals,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": NewOut}, **errors(400, *read_auth, 413, 422)},
        dependencies=list(read),
        tags=["recommendations"],
        summary="New arrivals: recently added available items, optionally ordered for a shopper",
    )
