"""The item-filter query parameters every list endpoint takes (``price_min``, ``price_max``, ``brand``,
repeated ``filter=prop:value``; grammar in core.merch_filters) and their checks: a malformed filter
or an unknown property is a 400 with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Query, Request
from pydantic import Field

from core.merch_filters import MAX_FILTER_CHARS, FilterError, parse_filters
from serving.errors import ApiError
from serving.merchandising import NO_MERCH, Merch, Merchandiser

FILTER_DOC = (
    "repeatable prop:value: only items whose catalog field or property prop equals value (text "
    "case-insensitive, numbers numerically, true/false); several values of one property match any"
)
# Documents the grammar's shape only: core.merch_filters checks it, so a malformed filter gets its
# own reason (400 invalid_filter), not a generic validation error.
FILTER_PATTERN = r"^[^:]*[^:\s][^:]*:.*\S.*$"
BRAND_PATTERN = r"\S"
PriceMin = Annotated[float | None, Query(ge=0, description="only items priced at least this")]
PriceMax = Annotated[float | None, Query(ge=0, description="only items priced at most this")]
Brand = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=256,
        description="only items of this brand (properties.brand)",
        json_schema_extra={"pattern": BRAND_PATTERN},
    ),
]
FilterItem = Annotated[str, Field(max_length=MAX_FILTER_CHARS, json_schema_extra={"pattern": FILTER_PATTERN})]
FilterParam = Annotated[list[FilterItem] | None, Query(description=FILTER_DOC)]
FILTER_FIELDS = ("price_min", "price_max", "brand", "filter")


def merch_for(
    request: Request,
    *,
    price_min: float | str | None = None,
    price_max: float | str | None = None,
    brand: str | None = None,
    filters: Iterable[str] = (),
) -> Merch:
    """The request's ``Merch`` (its filter under the active rules), or a 400 naming the problem."""
    merchandiser: Merchandiser | None = getattr(request.app.state, "merchandiser", None)
    if merchandiser is None:
        return NO_MERCH
    try:
        item_filter = parse_filters(
            price_min=price_min,
            price_max=price_max,
            brand=brand,
            filters=filters,
            known=merchandiser.known_property,
        )
    except FilterError as exc:
        raise ApiError(400, "invalid_filter", str(exc)) from None
    return merchandiser.for_request(item_filter)


async def merch_params(
    request: Request,
    price_min: PriceMin = None,
    price_max: PriceMax = None,
    brand: Brand = None,
    filter: FilterParam = None,
) -> Merch:
    return merch_for(request, price_min=price_min, price_max=price_max, brand=brand, filters=filter or ())


MerchDep = Annotated[Merch, Depends(merch_params)]


def lean_merch(request: Request) -> Merch:
    """For the lean recommendations route, which reads its query itself (serving.fast_params): the
    filter parameters, ``filter`` repeated (fast_params keeps only the last value of a name)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    found: dict[str, str] = {}
    filters: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "filter":
            filters.append(value)
        elif name in FILTER_FIELDS:
            found[name] = value
    if not found and not filters:
        return merch_for(request)
    return merch_for(
        request,
        price_min=found.get("price_min"),
        price_max=found.get("price_max"),
        brand=found.get("brand"),
        filters=filters,
    )
