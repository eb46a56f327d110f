"""The OpenAPI document, completed with the limits that come from settings.

Route declarations are static, but ``k``'s (and ``limit``'s) maximum (``serving.max_k``) and the batch size
(``serving.max_batch``) are settings; they are written into the generated document once, so it
states exactly what the server enforces.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from core.settings import ServingSettings


def complete_schema(schema: dict[str, Any], serving: ServingSettings) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            for param in operation.get("parameters", ()):
                if param.get("name") in ("k", "limit") and param.get("in") == "query":
                    param.setdefault("schema", {})["maximum"] = serving.max_k
            if path == "/v1/events" and "requestBody" in operation:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                for option in body.get("anyOf", [body]):
                    if option.get("type") == "array":
                        option["maxItems"] = serving.max_batch
    batch = schema.get("components", {}).get("schemas", {}).get("EventBatchIn")
    if batch is not None:
        batch["properties"]["events"]["maxItems"] = serving.max_batch
    return schema


def install(app: FastAPI, serving: ServingSettings) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_schema(generate(), serving)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
