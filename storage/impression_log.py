"""Impression logging off the request path: the port, its in-memory twin and the Kafka adapter.

Serving offers one record per list it answers (``core.impressions.Impression``, or a draft that
encodes itself); ``offer`` never blocks and never raises. The Kafka adapter encodes the record,
buffers it briefly and hands the buffer to librdkafka's bounded queue in one call; the client
compresses and sends the records to the impressions topic (one message each, key ``Impression.key``,
value ``Impression.to_json()``) on its own threads.

What cannot be delivered is counted, never raised: ``queue_full`` (Kafka slow or down for long
enough to fill the client's queue), ``delivery_failed`` (not acknowledged within the send timeout),
``closed`` (offered after ``close``, or not acknowledged when its timeout ran out) and ``invalid`` (a
draft that did not encode: a bug, logged). Serving exports the counts as
``streamrec_serving_impressions_*_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.impressions import Impression
from core.settings import ImpressionSettings, KafkaSettings

log = logging.getLogger(__name__)

DROP_REASONS = ("queue_full", "delivery_failed", "closed", "invalid")
# A record not acknowledged within this is dropped (counted) rather than held through a Kafka outage.
SEND_TIMEOUT_S = 10.0
# How long one poll for delivery reports waits (and so how soon the report thread notices ``close``).
IDLE_WAKE_S = 0.2
LOG_EVERY_S = 60.0


class ImpressionDraft(Protocol):
    """A record captured cheaply on the request path and encoded (or built) later, off it."""

    def build(self) -> Impression:
        """The validated record (the twin stores it)."""

    def encode(self) -> tuple[bytes, bytes]:
        """The Kafka key and value of ``build()``, made without validating (the sender's fast path)."""


Offered = Impression | ImpressionDraft


def materialize(record: Offered) -> Impression:
    return record if isinstance(record, Impression) else record.build()


@dataclass
class ImpressionCounts:
    """Cumulative counts since the log was opened (exported as counters)."""

    queued: int = 0
    sent: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


class ImpressionLog(Protocol):
    def offer(self, impression: Offered) -> bool:
        """Queue one impression for sending; False (counted) when it cannot be. Never blocks or raises.

        An adapter that buffers may learn only later that its client's queue refused a record: that
        drop is counted then (``queue_full``), and ``offer`` said True."""

    def close(self, timeout_s: float) -> None:
        """Send what is queued within ``timeout_s``; what is left is dropped (counted ``closed``)."""

    def counts(self) -> ImpressionCounts:
        """A copy of the counts so far."""


class _Counter:
    """Thread-safe counts: requests offer on the event loop, the shadow worker from its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = ImpressionCounts()
        self._logged_at: dict[str, float] = {}

    def queued(self, n: int = 1) -> None:
        with self._lock:
            self._counts.queued += n

    def sent(self, n: int) -> None:
        with self._lock:
            self._counts.sent += n

    def dropped(self, reason: str, n: int = 1, detail: str = "") -> None:
        with self._lock:
            self._counts.dropped[reason] += n
            total = self._counts.dropped[reason]
            now = time.monotonic()
            due = now - self._logged_at.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S
            if due:
                self._logged_at[reason] = now
        # Drops come in floods during an outage: one line a minute per reason says enough.
        if due:
            log.warning("event=impressions_dropped reason=%s total=%d detail=%r", reason, total, detail[:300])

    def snapshot(self) -> ImpressionCounts:
        with self._lock:
            c = self._counts
            return ImpressionCounts(c.queued, c.sent, dict(c.dropped))


class InMemoryImpressionLog:
    """The twin: records every offered impression (built at once, so a bad draft fails the test).

    ``capacity`` bounds how many it holds and ``full`` refuses everything: both count ``queue_full``
    drops the way the Kafka adapter's bounded queue does.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.full = False
        self.closed = False
        self.records: list[Impression] = []
        self._counter = _Counter()

    def offer(self, impression: Offered) -> bool:
        if self.closed:
            self._counter.dropped("closed")
            return False
        if self.full or (self.capacity is not None and len(self.records) >= self.capacity):
            self._counter.dropped("queue_full")
            return False
        self.records.append(materialize(impression))
        self._counter.queued()
        self._counter.sent(1)
        return True

    def close(self, timeout_s: float) -> None:
        self.closed = True

    def counts(self) -> ImpressionCounts:
        return self._counter.snapshot()


class KafkaImpressionLog:
    """Encodes each record on the caller's thread and hands them to librdkafka a batch at a time.

    ``offer`` encodes the record (~7 us) and appends it to a small buffer; the offer that finds the
    buffer due (``batch_max`` records, or its oldest record ``linger_s`` old) hands the whole buffer
    to the client's bounded queue in one ``produce_batch`` call (~1 us a record, no I/O, no wait).
    The client's threads compress and send it off the request path. A daemon thread serves delivery
    reports and flushes a buffer that no offer came to flush (quiet traffic) within ``poll_s``.

    Why batches (bench online, BENCHMARKS.md): one ``produce`` per request woke the client's broker
    thread once per request, and serving's p99 at half its saturating rate rose 1.2-1.75x with
    logging on; a batch per ``linger_s`` wakes it once per batch. An earlier design queued records
    for a Python sender thread: its GIL turns cost the event loop more than the encoding itself
    (p99 1.3-3.5x). Only failures are reported back (each report takes the GIL from the event loop);
    the records acknowledged are those queued, not failed and no longer in the client.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        poll_s: float = IDLE_WAKE_S,
        linger_s: float = 0.05,
        batch_max: int = 500,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.poll_s = poll_s
        self.linger_s = linger_s
        self.batch_max = max(1, batch_max)
        self._counter = _Counter()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        # Encoded records not yet handed to the client, and when the oldest of them was offered.
        self._buffer: list[dict[str, bytes]] = []
        self._buffer_since = 0.0
        self._buffer_lock = threading.Lock()
        # Queued, then reported failed (or given up at close): what was queued and is neither this
        # nor still in the client was acknowledged (successes are not reported one by one).
        self._failed = 0
        self._final: ImpressionCounts | None = None
        self._thread = threading.Thread(target=self._serve_reports, name="impression-reports", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, impressions: ImpressionSettings) -> KafkaImpressionLog:
        from confluent_kafka import Producer

        from storage.kafka import producer_config

        def on_error(err: Any) -> None:
            log.debug("event=impression_producer_error error=%s", err)

        config = producer_config(
            kafka,
            # The client's queue is the bound: a full one refuses the record (counted queue_full).
            **{"queue.buffering.max.messages": impressions.queue_max},
            # Records arrive a batch at a time (see offer), so the client need not wait long for more;
            # lz4: impressions are many small, similar JSON records (the dev broker's CPU fell 5x).
            **{"linger.ms": 5, "compression.type": "lz4"},
            **{"batch.num.messages": impressions.batch_max},
            # A record not acknowledged within this is dropped (counted delivery_failed), never sent
            # minutes late. Idempotence off: the consumer stores impressions by id, so a retried
            # duplicate is harmless, and there is no producer state to lose in a broker restart.
            **{"message.timeout.ms": int(SEND_TIMEOUT_S * 1000), "enable.idempotence": False},
            # Reports for failures only: a report per success is a GIL hand-off per request.
            **{"delivery.report.only.error": True},
            error_cb=on_error,
        )
        return cls(
            Producer(config),
            kafka.topics.impressions,
            linger_s=impressions.linger_s,
            batch_max=impressions.batch_max,
        )

    # ------------------------------------------------------------ the caller's side

    def offer(self, impression: Offered) -> bool:
        if self._closing.is_set():
            self._counter.dropped("closed")
            return False
        try:
            key, value = _encode(impression)
        except Exception as exc:  # a draft that encodes no record is a bug: count, log, go on
            self._counter.dropped("invalid", detail=f"{type(exc).__name__}: {exc}")
            return False
        now = time.monotonic()
        with self._buffer_lock:
            if not self._buffer:
                self._buffer_since = now
            self._buffer.append({"key": key, "value": value})
            due = len(self._buffer) >= self.batch_max or now - self._buffer_since >= self.linger_s
            batch = self._take() if due else None
        if batch:
            self._hand_over(batch)
        return True

    def _take(self) -> list[dict[str, bytes]]:
        """The buffer's records, leaving it empty (the caller holds ``_buffer_lock``)."""
        batch, self._buffer = self._buffer, []
        return batch

    def _flush_buffer(self, *, stale_only: bool) -> None:
        with self._buffer_lock:
            stale = bool(self._buffer) and time.monotonic() - self._buffer_since >= self.linger_s
            batch = self._take() if stale or not stale_only else None
        if batch:
            self._hand_over(batch)

    def _hand_over(self, batch: list[dict[str, bytes]]) -> None:
        """One call into the client's queue; what it refuses is counted, never raised."""
        try:
            self.producer.produce_batch(self.topic, batch, on_delivery=self._delivered)
        except Exception as exc:  # BufferError / KafkaException for the whole batch
            reason = "queue_full" if isinstance(exc, BufferError) else "delivery_failed"
            self._counter.dropped(reason, len(batch), detail=f"{type(exc).__name__}: {exc}")
            return
        # librdkafka marks each record it did not queue (its queue was full, or it was too large).
        refused = [m["_error"] for m in batch if m.get("_error") is not None]
        if len(refused) < len(batch):
            self._counter.queued(len(batch) - len(refused))
        full = sum(1 for err in refused if _is_queue_full(err))
        if full:
            self._counter.dropped("queue_full", full, detail=str(refused[0]))
        if len(refused) > full:
            self._counter.dropped("delivery_failed", len(refused) - full, detail=str(refused[-1]))

    def counts(self) -> ImpressionCounts:
        counts = self._counter.snapshot()
        if self._final is not None:  # closed: what was acknowledged is settled (offers now are dropped)
            counts.sent = self._final.sent
            return counts
        with self._lock:
            failed = self._failed
        counts.sent = max(0, counts.queued - failed - len(self.producer))
        return counts

    # ------------------------------------------------------------ delivery reports

    def _delivered(self, err: Any, _msg: Any) -> None:
        # The production client reports failures only (delivery.report.only.error): a report per
        # success would take the GIL from the event loop once per request.
        if err is None:
            return
        with self._lock:
            self._failed += 1
        reason = "closed" if self._closing.is_set() else "delivery_failed"
        self._counter.dropped(reason, detail=str(err))

    def _serve_reports(self) -> None:
        while not self._closing.is_set():
            try:
                self.producer.poll(self.poll_s)
                self._flush_buffer(stale_only=True)
            except Exception:  # the reports must keep flowing; a failed poll is logged and retried
                log.exception("event=impression_poll_failed")
                time.sleep(self.poll_s)

    # ------------------------------------------------------------ shutdown

    def close(self, timeout_s: float) -> None:
        if self._closing.is_set():
            return
        start = time.monotonic()
        self._closing.set()
        self._thread.join(self.poll_s + 1.0)
        self._flush_buffer(stale_only=False)
        left = self.producer.flush(max(0.0, timeout_s))
        if left:
            # Not acknowledged in time: purged now, so nothing counted as dropped arrives later; the
            # purge's reports (served by the last poll) count them as closed.
            purge = getattr(self.producer, "purge", None)
            if purge is not None:
                try:
                    purge(in_queue=True, in_flight=True, blocking=False)
                except Exception as exc:
                    log.debug("event=impression_purge_failed error=%s", exc)
            self.producer.poll(0)
        unreported = len(self.producer)  # a client that cannot purge: given up all the same
        if unreported > 0:
            with self._lock:
                self._failed += unreported
            self._counter.dropped("closed", unreported, detail="close timeout ran out")
        final = self._counter.snapshot()
        with self._lock:
            final.sent = max(0, final.queued - self._failed)
        self._final = final
        close = getattr(self.producer, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                log.debug("event=impression_producer_close_failed error=%s", exc)
        counts = self.counts()
        log.info(
            "event=impression_log_closed sent=%d dropped=%s seconds=%.2f",
            counts.sent,
            counts.dropped,
            time.monotonic() - start,
        )


def _is_queue_full(err: Any) -> bool:
    code = getattr(err, "code", None)
    if callable(code):
        from confluent_kafka import KafkaError

        return bool(code() == KafkaError._QUEUE_FULL)
    return "queue full" in str(err).lower()


def _encode(record: Offered) -> tuple[bytes, bytes]:
    if isinstance(record, Impression):
        return record.key, record.to_json()
    return record.encode()
