"""The background loops serving runs beside requests (model registry, experiments)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


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
