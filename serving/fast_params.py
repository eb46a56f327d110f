"""Request parameters for the hot read path, validated by one pydantic model per route.

FastAPI resolves each declared parameter through its dependency machinery on every request; for the
recommendations route, called on every storefront page view, that cost about as much as the rest of
the framework's work per request. A handler that takes only ``Request`` skips it: the path and query
parameters are validated here in a single ``model_validate`` call, failures become the same
``RequestValidationError`` (and so the same 422 body) FastAPI would raise, and ``openapi_parameters``
documents the model's fields so /docs and schema-driven tests see the same contract.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], request: Request, path_fields: frozenset[str]) -> M:
    data: dict[str, Any] = {name: request.path_params[name] for name in path_fields}
    for name, value in request.query_params.multi_items():
        if name not in path_fields:
            data[name] = value  # like FastAPI: the last of repeated scalar parameters wins
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**err, "loc": ("path" if err["loc"][0] in path_fields else "query", *err["loc"])}
            for err in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


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
