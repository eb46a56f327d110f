"""The background loops serving runs beside requests (model registry, experiments), and how the app
stops them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

# How long the app's shutdown waits for its background loops, and how often it repeats the cancel
# to one that has not ended (a library may lose a cancel: storage.realtime_reader.raise_lost_cancel).
STOP_TIMEOUT_S = 10.0
RECANCEL_S = 1.0


async def poll_in_thread(poll_once: Callable[[], Any], interval_s: float, failure_event: str) -> None:
    """Call the blocking ``poll_once`` in a worker thread every ``interval_s`` until cancelled; a
    failure is logged as ``failure_event`` and the loop goes on (requests keep the last state)."""
    while True:
        try:
            await asyncio.to_thread(poll_once)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=%s", failure_event)
        await asyncio.sleep(interval_s)


async def stop_tasks(
    tasks: Sequence[asyncio.Task[Any]], timeout_s: float = STOP_TIMEOUT_S, recancel_s: float = RECANCEL_S
) -> list[str]:
    """Cancel ``tasks`` and wait until they end, at most ``timeout_s``; returns the names of those
    still running then (each logged with its stack), so a shutdown never waits forever.

    A task still running ``recancel_s`` after its cancel is logged (``task_ignored_cancel``, with
    where it waits) and cancelled again: one lost cancel then costs a second, not the process.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending: set[asyncio.Task[Any]] = set(tasks)
    for task in pending:
        task.cancel()
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(recancel_s, left))
        for task in pending:
            log.warning("event=task_ignored_cancel task=%s at=%s", task.get_name(), where(task))
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("event=task_ended_with_error task=%s error=%r", task.get_name(), task.exception())
    stuck = sorted(task.get_name() for task in pending)
    if stuck:
        log.error("event=tasks_not_stopped tasks=%s timeout_s=%.1f", stuck, timeout_s)
    return stuck


def where(task: asyncio.Task[Any]) -> str:
    """The innermost frames a task waits in, oldest first (``file:line function``)."""
    return " > ".join(
        f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        for frame in task.get_stack(limit=6)
    )
