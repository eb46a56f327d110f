"""The requests of each endpoint and the reading of their answers, shared by the sync and async
clients (which differ only in how they send)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from core.events import InteractionEvent
from streamrec_client.errors import BadRequest, api_error
from streamrec_client.models import (
    Accepted,
    NewArrivals,
    Popular,
    Recent,
    Recommendations,
    Reranked,
    Shopper,
    Similar,
    Trending,
)

T = TypeVar("T")
Window = Literal["1h", "7d", "all"]
# Statuses worth another try for an idempotent GET: the dependency or a proxy may be back shortly.
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    out: type[T]
    params: dict[str, Any] | None = None
    body: Any = None

    @property
    def idempotent(self) -> bool:
        """GETs and PUTs are retried; a POST is not: it may have taken effect before its answer was
        lost. A PUT (shopper attributes) replaces the whole stored set, so sending it again is harmless."""
        return self.method in ("GET", "PUT")


def _segment(value: str) -> str:
    # An id may hold '/', '?', '#' or spaces: it must stay one path segment.
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def filters(
    price_min: float | None,
    price_max: float | None,
    brand: str | None,
    filter: str | Iterable[str] | None,
) -> dict[str, Any]:
    """The item-filter query parameters of the list endpoints (grammar: core.merch_filters).

    ``filter`` goes out as a repeated parameter. Only a filter without ':' is refused here (it can
    never be valid, whatever the catalog); bounds, blank parts and unknown properties are the server's
    call, and its 400 carries the reason."""
    # A lone string is one filter, not an iterable of one-character filters.
    wanted = [filter] if isinstance(filter, str) else list(filter or ())
    for raw in wanted:
        if ":" not in raw:
            # The type and code the API answers for a malformed filter, so one except clause serves;
            # no request was sent, hence no request id.
            message = f"filter {raw!r} is malformed: expected filter=property:value (e.g. colour:red)"
            raise BadRequest(400, "invalid_filter", message, None)
    return _params(price_min=price_min, price_max=price_max, brand=brand, filter=wanted or None)


def recommendations(
    user_id: str,
    k: int,
    exclude: Iterable[str] | None,
    category: str | None,
    include_purchased: bool | None,
    exclude_seen: bool | None,
    merch: Mapping[str, Any],
) -> Call[Recommendations]:
    excluded = ",".join(exclude) if exclude is not None else None
    params = _params(
        k=k,
        exclude=excluded or None,
        category=category,
        include_purchased=include_purchased,
        exclude_seen=exclude_seen,
    )
    path = f"/v1/users/{_segment(user_id)}/recommendations"
    return Call("GET", path, Recommendations, {**params, **merch})


def similar(
    item_id: str,
    k: int,
    user_id: str | None,
    include_purchased: bool | None,
    exclude_seen: bool | None,
    merch: Mapping[str, Any],
) -> Call[Similar]:
    params = _params(k=k, user_id=user_id, include_purchased=include_purchased, exclude_seen=exclude_seen)
    return Call("GET", f"/v1/items/{_segment(item_id)}/similar", Similar, {**params, **merch})


def popular(k: int, window: Window, category: str | None, merch: Mapping[str, Any]) -> Call[Popular]:
    params = _params(k=k, window=window, category=category)
    return Call("GET", "/v1/popular", Popular, {**params, **merch})


def trending(k: int, category: str | None, merch: Mapping[str, Any]) -> Call[Trending]:
    return Call("GET", "/v1/trending", Trending, {**_params(k=k, category=category), **merch})


def new_arrivals(
    k: int, category: str | None, user_id: str | None, merch: Mapping[str, Any]
) -> Call[NewArrivals]:
    params = _params(k=k, category=category, user_id=user_id)
    return Call("GET", "/v1/new", NewArrivals, {**params, **merch})


def recent(user_id: str, limit: int) -> Call[Recent]:
    return Call("GET", f"/v1/users/{_segment(user_id)}/recent", Recent, _params(limit=limit))


def events(batch: Sequence[InteractionEvent | Mapping[str, Any]]) -> Call[Accepted]:
    body = [e.to_wire() if isinstance(e, InteractionEvent) else dict(e) for e in batch]
    return Call("POST", "/v1/events", Accepted, body=body)


def rerank(
    user_id: str, item_ids: Sequence[str], drop_unknown: bool, merch: Mapping[str, Any]
) -> Call[Reranked]:
    body = {"item_ids": list(item_ids), "drop_unknown": drop_unknown}
    # The filters are query parameters here too: the body is the candidate list only.
    path = f"/v1/users/{_segment(user_id)}/rerank"
    return Call("POST", path, Reranked, dict(merch) or None, body=body)


def put_shopper(user_id: str, attributes: Mapping[str, Any]) -> Call[Shopper]:
    body = {"attributes": dict(attributes)}
    return Call("PUT", f"/v1/users/{_segment(user_id)}", Shopper, body=body)


def shopper(user_id: str) -> Call[Shopper]:
    return Call("GET", f"/v1/users/{_segment(user_id)}", Shopper)


def schema(which: Literal["events", "items"]) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/schema/{which}", dict)


def read(call: Call[T], response: httpx.Response) -> T:
    """The typed answer, or the typed error carrying the API's reason."""
    if response.status_code >= 400:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        raise api_error(response.status_code, body, response.headers.get("x-request-id"))
    if isinstance(call.out, type) and issubclass(call.out, BaseModel):
        return call.out.model_validate_json(response.content)  # type: ignore[return-value]
    return response.json()  # type: ignore[no-any-return]
