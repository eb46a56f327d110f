"""``retrain --every``: run on a fixed interval, or early once enough new events have arrived."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from core.errors import StreamrecError
from storage.retrain_requests import RetrainRequests

log = logging.getLogger(__name__)


def run_every(
    interval_s: float,
    run_once: Callable[[], object],
    *,
    count_events: Callable[[], int] | None = None,
    after_events: int | None = None,
    requests: RetrainRequests | None = None,
    between_runs: Callable[[], object] | None = None,
    poll_s: float = 10.0,
    stop: threading.Event | None = None,
    max_runs: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run ``run_once`` now, then every ``interval_s`` (or as soon as ``after_events`` new events arrived,
    or as soon as it takes an on-demand request, made through the admin API, from ``requests``).

    ``between_runs`` is housekeeping called on every poll while waiting (erasures reach stored models
    within ``poll_s``, not a whole interval later); its failures are logged like a run's.

    A failing run is logged and the loop goes on to the next one; returns the number of runs made.
    """
    stop = stop or threading.Event()
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        baseline = _count(count_events) if after_events else None
        started = clock()
        try:
            run_once()
        except Exception as exc:
            # Expected failures (no data, server down, degenerate fit) carry a message; bugs get a traceback.
            log.error(
                "retrain_run_failed action=continue next_in_s=%.0f error=%s",
                interval_s,
                exc,
                exc_info=not isinstance(exc, StreamrecError),
            )
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        while not stop.is_set():
            remaining = interval_s - (clock() - started)
            if remaining <= 0:
                break
            if baseline is not None and after_events:
                current = _count(count_events)
                if current is not None and current - baseline >= after_events:
                    log.info("retrain_early new_events=%d threshold=%d", current - baseline, after_events)
                    break
            if requests is not None and _claimed(requests):
                break
            if between_runs is not None:
                _housekeeping(between_runs)
            stop.wait(min(poll_s, remaining))
    return runs


def _count(count_events: Callable[[], int] | None) -> int | None:
    if count_events is None:
        return None
    try:
        return count_events()
    except Exception as exc:
        # Counting is only a hint for an early run; the interval still applies.
        log.warning("event_count_failed error=%s", exc)
        return None


def _claimed(requests: RetrainRequests) -> bool:
    try:
        taken = requests.take()
    except Exception as exc:
        log.warning("retrain_request_check_failed error=%s", exc)
        return False
    if taken is None:
        return False
    log.info("retrain_requested action=run_now request_id=%s reason=%s", taken.id, taken.reason)
    return True


def _housekeeping(task: Callable[[], object]) -> None:
    try:
        task()
    except Exception as exc:
        log.warning("retrain_housekeeping_failed action=retry_next_poll error=%s", exc)
