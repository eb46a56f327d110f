"""GET /v1/schema/events and /v1/schema/items: the JSON Schemas of event v1 (core.event_schema).

Public whatever serving.public_read says (a schema holds no data, and producers outside the API need
it), and cacheable: the bytes are rendered once per process, change only with a release, and carry
an ETag, so a client revalidating gets 304 without a body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header
from starlette.responses import Response

from core.event_schema import interaction_schema, item_update_schema
from serving.schemas import errors

MEDIA_TYPE = "application/schema+json"
# A day: a new release may change the schema, and a restart is when that happens.
CACHE_CONTROL = "public, max-age=86400"


def _handler(build: Callable[[], dict[str, Any]]) -> Callable[..., Any]:
    body = json.dumps(build(), indent=2, ensure_ascii=False).encode("utf-8")
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}

    async def schema(if_none_match: Annotated[str | None, Header(max_length=1024)] = None) -> Response:
        # RFC 9110: If-None-Match holds a list of entity tags, or *; weak tags compare equal too.
        if if_none_match is not None:
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            if "*" in tags or etag in tags:
                return Response(status_code=304, headers=headers)
        return Response(body, media_type=MEDIA_TYPE, headers=headers)

    return schema


def build_schema_router() -> APIRouter:
    router = APIRouter()
    for path, build, summary in (
        ("/v1/schema/events", interaction_schema, "JSON Schema of an interaction event (schema v1)"),
        ("/v1/schema/items", item_update_schema, "JSON Schema of a catalog update (schema v1)"),
    ):
        router.add_api_route(
            path,
            _handler(build),
            methods=["GET"],
            response_model=None,
            responses={
                200: {
                    "description": "the schema (draft 2020-12); cacheable, with an ETag",
                    "content": {MEDIA_TYPE: {"schema": {"type": "object"}}},
                },
                304: {"description": "not modified (If-None-Match matched the ETag)"},
                **errors(400, 413, 422),
            },
            tags=["schema"],
            summary=summary,
        )
    return router
