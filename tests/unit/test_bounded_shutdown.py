"""serving.bounded_shutdown: the exit timer starts with the lifespan shutdown and only then."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from serving.bounded_shutdown import BoundedShutdown


class LifespanApp:
    """An ASGI app whose shutdown clean-up blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.state = "app state"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.release.wait, 5.0)
                await send({"type": "lifespan.shutdown.complete"})
                return


def run_lifespan(app: Any, messages: list[str]) -> list[str]:
    sent: list[str] = []

    async def main() -> None:
        queue = list(messages)

        async def receive() -> dict[str, str]:
            return {"type": queue.pop(0)}

        async def send(message: dict[str, str]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)

    asyncio.run(main())
    return sent


def test_a_stuck_shutdown_dumps_the_stacks_and_exits() -> None:
    inner = LifespanApp()
    exited = threading.Event()

    def exit_now() -> None:
        exited.set()
        inner.release.set()  # let the test's own loop finish

    app = BoundedShutdown(inner, 0.2, exit_now=exit_now)
    sent = run_lifespan(app, ["lifespan.startup", "lifespan.shutdown"])
    assert exited.is_set()
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_startup_and_requests_start_no_timer_and_the_app_stays_reachable() -> None:
    inner = LifespanApp()
    app = BoundedShutdown(inner, 0.05, exit_now=lambda: None)
    sent: list[str] = []

    async def request() -> None:
        async def receive() -> dict[str, str]:
            return {"type": "http.request"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "http"}, receive, send)

    asyncio.run(request())
    assert sent == ["http.response.start", "http.response.body"]
    assert app.timer is None and app.state == "app state"
