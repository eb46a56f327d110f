"""PUT/GET /v1/users/{user_id}: a shopper's attributes (country, segment, age band...).

Validated by ``core.shoppers`` (the item-property rules), stored through ``storage.shoppers``'
port, erased with the shopper by ``AdminService.erase_user``. Both routes need the ingest key:
the storefront backend that writes attributes may read them back, but they are personal data, so
even a deployment with public reads never serves them without a key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from core.event_schema import ID_PATTERN, PROPERTIES
from core.events import ParseError
from core.shoppers import validate_shopper_update
from core.storable import control_character
from serving.auth import auth_first, require
from serving.responses import FastJSONResponse
from serving.schemas import errors
from serving.service_errors import NotFound, Rejected, ServiceError, Unavailable
from storage.shoppers import ShopperRecord, ShopperStore

# A stored id follows the event id rule (documented by the pattern, enforced by _check_user); a
# lookup takes any id, as the other per-user reads do (an id no event could carry is simply unknown).
NewUserId = Annotated[str, Path(min_length=1, max_length=256, json_schema_extra={"pattern": ID_PATTERN})]
UserId = Annotated[str, Path(min_length=1, max_length=256)]
ATTRIBUTES_SCHEMA = {k: v for k, v in PROPERTIES.items() if k not in ("type", "description")}


class ShopperIn(BaseModel):
    """``core.shoppers.ShopperUpdate`` validates it (codes and reasons as for item properties)."""

    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, Any] = Field(
        description="flat object of scalars (e.g. country, segment, age_band); replaces the stored set; "
        "the same rules as an item's properties",
        json_schema_extra=ATTRIBUTES_SCHEMA,
    )


class ShopperOut(BaseModel):
    user_id: str
    attributes: dict[str, Any]
    updated_at: str = Field(description="when the attributes were last stored (ISO-8601, UTC)")


def _out(record: ShopperRecord) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "attributes": record.attributes,
        "updated_at": record.updated_at.isoformat(timespec="milliseconds"),
    }


def _check_user(user_id: str) -> None:
    # The id rule of events (core.events._check_id): it is the same shopper id.
    if not user_id.strip():
        raise Rejected("invalid_value", "user_id must not be blank")
    if (ch := control_character(user_id)) is not None:
        raise Rejected("control_character", f"user_id contains the control character {ch!a}")


class ShopperService:
    def __init__(self, store: ShopperStore) -> None:
        self.store = store

    async def put(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_user(user_id)
        parsed = validate_shopper_update(body)
        if isinstance(parsed, ParseError):
            raise Rejected(parsed.code, parsed.reason)
        now = datetime.now(UTC)
        record = await self._call(self.store.put_attributes, user_id, dict(parsed.attributes), now)
        return _out(record)

    async def get(self, user_id: str) -> dict[str, Any]:
        record = await self._call(self.store.get_attributes, user_id)
        if record is None:
            raise NotFound("unknown_user", f"no attributes are stored for user {user_id!r}")
        return _out(record)

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except ServiceError:
            raise
        except Exception as exc:
            raise Unavailable(
                "mongodb_unavailable", f"shopper attributes are unavailable ({exc}); retry"
            ) from exc


def get_shoppers(request: Request) -> ShopperService:
    service = getattr(request.app.state, "shoppers", None)
    if not isinstance(service, ShopperService):
        raise RuntimeError(f"app.state.shoppers is {type(service).__name__}, not ShopperService")
    return service


ShoppersDep = Annotated[ShopperService, Depends(get_shoppers)]


async def put_shopper(shoppers: ShoppersDep, user_id: NewUserId, body: ShopperIn) -> Response:
    return FastJSONResponse(await shoppers.put(user_id, body.model_dump()))


async def get_shopper(shoppers: ShoppersDep, user_id: UserId) -> Response:
    return FastJSONResponse(await shoppers.get(user_id))


def build_shopper_router() -> APIRouter:
    router = APIRouter()
    for method, handler, codes, summary in (
        ("PUT", put_shopper, (400, 401, 403, 413, 422, 503), "Store a shopper's attributes"),
        ("GET", get_shopper, (400, 401, 403, 404, 413, 422, 503), "A shopper's stored attributes"),
    ):
        router.add_api_route(
            "/v1/users/{user_id}",
            handler,
            methods=[method],
            response_model=None,
            responses={200: {"model": ShopperOut}, **errors(*codes)},
            dependencies=[Depends(require("ingest"))],
            tags=["shoppers"],
            route_class_override=auth_first("ingest"),
            summary=summary,
        )
    return router
