"""Request ids: a pure ASGI middleware (no per-request Request/Response objects on the hot path).

Each HTTP request gets an id: the incoming ``X-Request-ID`` when it is sane
(``core.log_context.sane_request_id``), else a fresh one. It is set in the request's context (log
records and error bodies read it from there) and returned in the ``X-Request-ID`` response header.
"""

from __future__ import annotations

from typing import Any

from core.log_context import REQUEST_ID, sane_request_id

HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = sane_request_id(incoming)
        # Not reset afterwards: every request runs in its own task (a copy of the context), and the
        # server-error handler, which runs outside this middleware, still needs the id for its body.
        REQUEST_ID.set(request_id)
        header = (HEADER, request_id.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
