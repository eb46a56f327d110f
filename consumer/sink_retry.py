"""The consumer's retry policy for sink outages (MongoDB, Redis, the dead-letter producer).

Bounded exponential backoff (``consumer.backoff_initial_s`` .. ``consumer.backoff_max_s``), only for
``SinkUnavailable``; it ends when a stop is requested, and ``sleep`` is the runner's own wait, which
keeps serving the group protocol on paused partitions, so the member stays in its group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from consumer import metrics
from consumer.kafka_records import short_error
from consumer.processor import SinkUnavailable
from core.settings import ConsumerSettings

log = logging.getLogger(__name__)


def sink_retrying(
    settings: ConsumerSettings, should_stop: Callable[[], bool], sleep: Callable[[float], None]
) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(SinkUnavailable),
        wait=wait_exponential(
            multiplier=settings.backoff_initial_s, min=settings.backoff_initial_s, max=settings.backoff_max_s
        ),
        stop=lambda _state: should_stop(),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )


def log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    sink = exc.sink if isinstance(exc, SinkUnavailable) else "unknown"
    error = exc.error if isinstance(exc, SinkUnavailable) else exc
    delay = state.next_action.sleep if state.next_action else 0.0
    metrics.SINK_RETRIES.labels(sink=sink).inc()
    log.warning(
        "event=sink_unavailable sink=%s attempt=%d retry_in_s=%.1f error=%s",
        sink,
        state.attempt_number,
        delay,
        short_error(error),
    )
