"""Request parameters for the hot read path, validated by one pydantic model per route.

FastAPI resolves each declared parameter through its dependency machinery on every request; for the
recommendations route, called on every storefront page view, that cost about as much as the rest of
the framework's work per request. A handler that takes only ``Request`` skips it: the path and query
parameters are validated here in a single ``model_validate`` call, failures become the same
``RequestValidationError`` (and so the same 422 body) FastAPI would raise, and ``openapi_parameters``
documents the model's fields so /docs and schema-driven tests see the same contract.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], request: Request, path_fields: frozenset[str]) -> M:
    data: dict[str, Any] = {name: request.path_params[name] for name in path_fields}
    # Parsed as Starlette's QueryParams does, without building the multidict this route never uses.
    query = request.scope.get("query_string", b"").decode("latin-1")
    lists = _list_fields(model)
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in lists:
            data.setdefault(name, []).append(value)  # a repeatable parameter keeps every value
        elif name not in path_fields:
            data[name] = value  # like FastAPI: the last of repeated scalar parameters wins
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**err, "loc": ("path" if err["loc"][0] in path_fields else "query", *err["loc"])}
            for err in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


@functools.cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if "list[" in str(info.annotation) or getattr(info.annotation, "__origin__", None) is list
    )


def openapi_parameters(model: type[BaseModel], path_fields: frozenset[str]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "path" if name in path_fields else "query",
            "required": name in required or name in path_fields,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


class LeanRoute(APIRoute):
    """An ``APIRoute`` for a hot endpoint declared as ``async def endpoint(request) -> Response`` that
    validates its own parameters (``parse_params``). With no dependencies to resolve, FastAPI's
    request handler would still walk its dependency, body and response-model machinery on every call;
    this route calls the endpoint directly instead. Everything around it (Request creation, exception
    handlers, middleware, OpenAPI) is FastAPI's as usual. A route that has dependencies (API-key auth
    when reads are not public) keeps FastAPI's handler, so no check is ever skipped."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        if (
            dependant.dependencies
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
        ):
            return super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request)
            return response

        return handler
