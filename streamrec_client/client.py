"""Typed HTTP clients for the streamrec API: ``StreamrecClient`` (sync) and ``AsyncStreamrecClient``.

Each call has a timeout (``timeout`` seconds, or an ``httpx.Timeout``); GETs and the PUT of shopper
attributes are retried with exponential backoff and jitter (tenacity) on connection failures, timeouts
and 502/503/504, up to ``retries`` attempts in all; POSTs (events, rerank) are sent once, since a lost
answer may hide a request that took effect. An error answer raises the ``errors.ApiError`` subclass
of its status, with the API's code, message and request id; no answer at all raises
``errors.TransportError``.

Every list method takes the item filters ``price_min``, ``price_max``, ``brand`` and ``filter``
(``"prop:value"`` or several; see core.merch_filters), keyword-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.events import InteractionEvent
from streamrec_client import calls
from streamrec_client.calls import RETRY_STATUSES, Call, Window
from streamrec_client.errors import ApiError, TransportError
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
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 3


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) or (isinstance(exc, ApiError) and exc.status in RETRY_STATUSES)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def _policy(retries: int) -> dict[str, Any]:
    return {
        "stop": stop_after_attempt(max(1, retries)),
        "wait": wait_exponential_jitter(initial=0.1, max=2.0),
        "retry": retry_if_exception(_retryable),
        "reraise": True,
    }


class StreamrecClient:
    """``StreamrecClient("http://recs:8000", api_key=...)``; use it as a context manager or ``close()``.

    ``http`` replaces the underlying ``httpx.Client`` (its base URL, headers and timeout are then its own)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        http: httpx.Client | None = None,
    ) -> None:
        self.retries = retries
        self._own = http is None
        self._http = http or httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> StreamrecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    def _once(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, params=call.params, json=call.body)
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            raise TransportError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
        return calls.read(call, response)

    def _send(self, call: Call[T]) -> T:
        if not call.idempotent:
            return self._once(call)
        for attempt in Retrying(**_policy(self.retries)):
            with attempt:
                return self._once(call)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def recommendations(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude: Iterable[str] | None = None,
        category: str | None = None,
        include_purchased: bool | None = None,
        exclude_seen: bool | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Recommendations:
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(
            calls.recommendations(user_id, k, exclude, category, include_purchased, exclude_seen, merch)
        )

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        user_id: str | None = None,
        include_purchased: bool | None = None,
        exclude_seen: bool | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Similar:
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(calls.similar(item_id, k, user_id, include_purchased, exclude_seen, merch))

    def popular(
        self,
        k: int = 10,
        *,
        window: Window = "7d",
        category: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Popular:
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(calls.popular(k, window, category, merch))

    def trending(
        self,
        k: int = 10,
        *,
        category: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Trending:
        """GET /v1/trending: items whose short-window rate grew most against their long-window rate."""
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(calls.trending(k, category, merch))

    def new_arrivals(
        self,
        k: int = 10,
        *,
        category: str | None = None,
        user_id: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> NewArrivals:
        """GET /v1/new: recently added available items; ``user_id`` re-orders them for that shopper."""
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(calls.new_arrivals(k, category, user_id, merch))

    def recent(self, user_id: str, limit: int = 10) -> Recent:
        return self._send(calls.recent(user_id, limit))

    def send_events(self, events: Sequence[InteractionEvent | Mapping[str, Any]]) -> Accepted:
        """POST /v1/events (ingest key): 202 with per-event errors for the ones refused."""
        return self._send(calls.events(events))

    def rerank(
        self,
        user_id: str,
        item_ids: Sequence[str],
        *,
        drop_unknown: bool = False,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Reranked:
        merch = calls.filters(price_min, price_max, brand, filter)
        return self._send(calls.rerank(user_id, item_ids, drop_unknown, merch))

    def set_shopper_attributes(self, user_id: str, attributes: Mapping[str, Any]) -> Shopper:
        """PUT /v1/users/{user_id} (ingest key): replaces the shopper's stored attributes."""
        return self._send(calls.put_shopper(user_id, attributes))

    def shopper_attributes(self, user_id: str) -> Shopper:
        """GET /v1/users/{user_id} (ingest key): ``NotFound`` (``unknown_user``) when none are stored."""
        return self._send(calls.shopper(user_id))

    def event_schema(self, which: Literal["events", "items"] = "events") -> dict[str, Any]:
        return self._send(calls.schema(which))


class AsyncStreamrecClient:
    """The same calls, awaitable: ``async with AsyncStreamrecClient(url) as client: ...``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.retries = retries
        self._own = http is None
        self._http = http or httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> AsyncStreamrecClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def _once(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, params=call.params, json=call.body)
        except httpx.TransportError as exc:
            raise TransportError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
        return calls.read(call, response)

    async def _send(self, call: Call[T]) -> T:
        if not call.idempotent:
            return await self._once(call)
        async for attempt in AsyncRetrying(**_policy(self.retries)):
            with attempt:
                return await self._once(call)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def recommendations(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude: Iterable[str] | None = None,
        category: str | None = None,
        include_purchased: bool | None = None,
        exclude_seen: bool | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Recommendations:
        merch = calls.filters(price_min, price_max, brand, filter)
        call = calls.recommendations(user_id, k, exclude, category, include_purchased, exclude_seen, merch)
        return await self._send(call)

    async def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        user_id: str | None = None,
        include_purchased: bool | None = None,
        exclude_seen: bool | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Similar:
        merch = calls.filters(price_min, price_max, brand, filter)
        return await self._send(calls.similar(item_id, k, user_id, include_purchased, exclude_seen, merch))

    async def popular(
        self,
        k: int = 10,
        *,
        window: Window = "7d",
        category: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Popular:
        merch = calls.filters(price_min, price_max, brand, filter)
        return await self._send(calls.popular(k, window, category, merch))

    async def trending(
        self,
        k: int = 10,
        *,
        category: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Trending:
        merch = calls.filters(price_min, price_max, brand, filter)
        return await self._send(calls.trending(k, category, merch))

    async def new_arrivals(
        self,
        k: int = 10,
        *,
        category: str | None = None,
        user_id: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> NewArrivals:
        merch = calls.filters(price_min, price_max, brand, filter)
        return await self._send(calls.new_arrivals(k, category, user_id, merch))

    async def recent(self, user_id: str, limit: int = 10) -> Recent:
        return await self._send(calls.recent(user_id, limit))

    async def send_events(self, events: Sequence[InteractionEvent | Mapping[str, Any]]) -> Accepted:
        return await self._send(calls.events(events))

    async def rerank(
        self,
        user_id: str,
        item_ids: Sequence[str],
        *,
        drop_unknown: bool = False,
        price_min: float | None = None,
        price_max: float | None = None,
        brand: str | None = None,
        filter: str | Iterable[str] | None = None,
    ) -> Reranked:
        merch = calls.filters(price_min, price_max, brand, filter)
        return await self._send(calls.rerank(user_id, item_ids, drop_unknown, merch))

    async def set_shopper_attributes(self, user_id: str, attributes: Mapping[str, Any]) -> Shopper:
        return await self._send(calls.put_shopper(user_id, attributes))

    async def shopper_attributes(self, user_id: str) -> Shopper:
        return await self._send(calls.shopper(user_id))

    async def event_schema(self, which: Literal["events", "items"] = "events") -> dict[str, Any]:
        return await self._send(calls.schema(which))
