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
from streamrec_client.errors import api_error
from streamrec_client.models import Accepted, Popular, Recent, Recommendations, Reranked, Similar

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
        """Only GETs are retried: a POST may have taken effect before its answer was lost."""
        return self.method == "GET"


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


def recommendations(
    user_id: str,
    k: int,
    exclude: Iterable[str] | None,
    category: str | None,
    include_purchased: bool | None,
    exclude_seen: bool | None,
) -> Call[Recommendations]:
    excluded = ",".join(exclude) if exclude is not None else None
    params = _params(
        k=k,
        exclude=excluded or None,
        category=category,
        include_purchased=include_purchased,
        exclude_seen=exclude_seen,
    )
    return Call("GET", f"/v1/users/{_segment(user_id)}/recommendations", Recommendations, params)


def similar(
    item_id: str, k: int, user_id: str | None, include_purchased: bool | None, exclude_seen: bool | None
) -> Call[Similar]:
    params = _params(k=k, user_id=user_id, include_purchased=include_purchased, exclude_seen=exclude_seen)
    return Call("GET", f"/v1/items/{_segment(item_id)}/similar", Similar, params)


def popular(k: int, window: Window, category: str | None) -> Call[Popular]:
    return Call("GET", "/v1/popular", Popular, _params(k=k, window=window, category=category))


def recent(user_id: str, limit: int) -> Call[Recent]:
    return Call("GET", f"/v1/users/{_segment(user_id)}/recent", Recent, _params(limit=limit))


def events(batch: Sequence[InteractionEvent | Mapping[str, Any]]) -> Call[Accepted]:
    body = [e.to_wire() if isinstance(e, InteractionEvent) else dict(e) for e in batch]
    return Call("POST", "/v1/events", Accepted, body=body)


def rerank(user_id: str, item_ids: Sequence[str], drop_unknown: bool) -> Call[Reranked]:
    body = {"item_ids": list(item_ids), "drop_unknown": drop_unknown}
    return Call("POST", f"/v1/users/{_segment(user_id)}/rerank", Reranked, body=body)


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
