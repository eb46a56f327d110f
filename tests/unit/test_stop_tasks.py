"""serving.polling.stop_tasks: the app's shutdown ends its loops even when one loses a cancel, and
never waits past its bound."""

from __future__ import annotations

import asyncio
import logging

import pytest

from serving.polling import stop_tasks


async def _loop() -> None:
    while True:
        await asyncio.sleep(0.01)


async def _loses_first_cancel(state: dict[str, int]) -> None:
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            state["cancels"] += 1
            if state["cancels"] > 1:
                raise
            # What a library that loses a cancel does: the loop goes on as if nothing happened.


async def _ignores_cancels_until(released: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if released.is_set():
                raise


def test_plain_loops_end_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[str], list[bool]]:
        tasks = [asyncio.create_task(_loop(), name=f"loop-{i}") for i in range(3)]
        await asyncio.sleep(0.02)
        stuck = await stop_tasks(tasks, timeout_s=5.0, recancel_s=1.0)
        return stuck, [t.cancelled() for t in tasks]

    with caplog.at_level(logging.WARNING, logger="serving.polling"):
        stuck, cancelled = asyncio.run(scenario())
    assert stuck == [] and all(cancelled)
    # No re-cancel round was needed: every loop ended on the first cancel.
    assert not [r for r in caplog.records if "task_ignored_cancel" in r.getMessage()]


def test_a_loop_that_lost_its_cancel_is_cancelled_again(caplog: pytest.LogCaptureFixture) -> None:
    state = {"cancels": 0}

    async def scenario() -> tuple[list[str], bool]:
        task = asyncio.create_task(_loses_first_cancel(state), name="replica-sync")
        await asyncio.sleep(0.02)
        stuck = await stop_tasks([task], timeout_s=5.0, recancel_s=0.1)
        return stuck, task.cancelled()

    with caplog.at_level(logging.WARNING, logger="serving.polling"):
        stuck, cancelled = asyncio.run(scenario())
    assert stuck == [] and cancelled and state["cancels"] == 2
    warning = next(r.getMessage() for r in caplog.records if "task_ignored_cancel" in r.getMessage())
    # The log says which loop and where it waited.
    assert "task=replica-sync" in warning and "_loses_first_cancel" in warning


def test_a_loop_that_never_ends_is_named_and_left_after_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[str]:
        released = asyncio.Event()
        stubborn = asyncio.create_task(_ignores_cancels_until(released), name="stubborn")
        plain = asyncio.create_task(_loop(), name="plain")
        await asyncio.sleep(0.02)
        stuck = await stop_tasks([stubborn, plain], timeout_s=0.35, recancel_s=0.1)
        released.set()  # only so that this test's loop can finish
        stubborn.cancel()
        return stuck

    with caplog.at_level(logging.WARNING, logger="serving.polling"):
        stuck = asyncio.run(scenario())
    assert stuck == ["stubborn"]
    # The bound, not forever: each round waits at least its share of the 0.35 s, so at most 4 rounds
    # (one re-cancel each) whatever the machine's speed.
    recancels = [r for r in caplog.records if "task_ignored_cancel task=stubborn" in r.getMessage()]
    assert 1 <= len(recancels) <= 4
    errors = [r.getMessage() for r in caplog.records if "tasks_not_stopped" in r.getMessage()]
    assert errors and "stubborn" in errors[0] and "plain" not in errors[0]
