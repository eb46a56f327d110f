"""One error shape for every response: ``{"error": {"code", "message", "request_id"}}``, framework
errors included; ``request_id`` is the request's id (also in the ``X-Request-ID`` header and logs)."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.log_context import current_request_id
from serving.responses import FastJSONResponse
from serving.service_errors import Conflict, NotFound, Rejected, ServiceError, Unavailable

log = logging.getLogger(__name__)
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


# The one place a domain error becomes an HTTP status (the code and message pass through unchanged).
STATUS_OF: dict[type[ServiceError], int] = {
    NotFound: 404,
    Conflict: 409,
    Rejected: 422,
    Unavailable: 503,
}


def status_of(exc: ServiceError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500  # a ServiceError subclass missing from the table is a bug: answered like any other


class ApiError(Exception):
    """An error of the HTTP layer itself (auth, parameter checks in the routes); services raise
    ``serving.service_errors`` instead."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> FastJSONResponse:
    return FastJSONResponse(
        {"error": {"code": code, "message": message, "request_id": current_request_id()}},
        status_code=status,
        headers=headers,
    )


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def allowed_methods(request: Request, fallback: str) -> str:
    """Every method the path answers, from the app's OpenAPI document: Starlette's 405 names only the
    first route that matched the path, which is wrong for a path served by several routes (GET and
    POST /v1/admin/experiments). Paths outside the document keep Starlette's answer (``fallback``)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in operations if m in _HTTP_METHODS}
    return ", ".join(sorted(methods)) if methods else fallback


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> FastJSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> FastJSONResponse:
        status = status_of(exc)
        if status == 500:
            log.error("event=unmapped_service_error kind=%s code=%s", type(exc).__name__, exc.code)
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> FastJSONResponse:
        return error_response(422, "invalid_request", _describe_validation(list(exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> FastJSONResponse:
        log.exception("event=unhandled_error path=%s error=%s", request.url.path, type(exc).__name__)
        # Answered outside the request-id middleware (Starlette's outermost layer): set the header here.
        return error_response(
            500,
            "internal",
            "internal error; look for this request id in the logs",
            {"X-Request-ID": current_request_id()},
        )
