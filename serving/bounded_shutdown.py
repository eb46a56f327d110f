"""A bound on how long a serving process may take to exit once its lifespan shutdown starts.

uvicorn bounds the wait for open connections (``timeout_graceful_shutdown``); nothing bounds what
comes after it: the lifespan's clean-up (background tasks, the impression log, the clients), then the
interpreter joining the default executor's threads and any non-daemon thread. A blocked call in any of
them would leave the process running until the orchestrator's SIGKILL, with nothing in the log. This
ASGI wrapper starts a timer when the server asks the app to shut down: if the process is still alive
``grace_s`` later, every thread's stack goes to stderr (the process log) and the process exits with
status 1. It wraps the app only where a real server runs it (``cli.serve.app_factory``), never in
tests that run the lifespan in their own process.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _hard_exit() -> None:
    logging.shutdown()
    os._exit(1)


class BoundedShutdown:
    def __init__(self, app: Any, grace_s: float, *, exit_now: Callable[[], None] = _hard_exit) -> None:
        self.app = app
        self.grace_s = grace_s
        self._exit_now = exit_now
        self.timer: threading.Timer | None = None

    def __getattr__(self, name: str) -> Any:
        # ``state``, ``router`` and the rest stay reachable as on the wrapped app.
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_receive() -> Any:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                self.start_timer()
            return message

        await self.app(scope, watched_receive, send)

    def start_timer(self) -> None:
        if self.timer is not None:
            return
        self.timer = threading.Timer(self.grace_s, self._expire)
        self.timer.daemon = True  # a process that exits in time is not held by its own watchdog
        self.timer.start()

    def _expire(self) -> None:
        log.error(
            "event=shutdown_grace_exceeded grace_s=%.1f pid=%d action=exit_1 stacks=stderr",
            self.grace_s,
            os.getpid(),
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self._exit_now()
