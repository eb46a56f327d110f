"""Impression logging off the request path: the port, its in-memory twin and the Kafka adapter.

Serving offers one record per list it answers (``core.impressions.Impression``); ``offer`` never blocks
and never raises. The Kafka adapter puts the record on a bounded in-process queue that one daemon
thread drains, producing batches to the impressions topic (key ``Impression.key``, value
``Impression.to_json()``) through the project's ``ResilientProducer`` (acks=all, idempotence). A
request therefore pays for one small object and a non-blocking put; building the full record,
validating and serializing it happen on the sender thread.

What cannot be delivered is counted, never raised: ``queue_full`` (Kafka slow or down for long
enough to fill the queue), ``delivery_failed`` (a batch not acknowledged within the send timeout),
``closed`` (offered after ``close``, or still queued when its timeout ran out) and ``invalid`` (a draft
that did not build a valid record: a bug, logged). Serving exports the counts as
``streamrec_serving_impressions_*_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.impressions import Impression
from core.settings import ImpressionSettings, KafkaSettings
from storage.errors import SendFailed
from storage.kafka_delivery import Delivery, OutMessage
from storage.kafka_producer import ResilientProducer

log = logging.getLogger(__name__)

DROP_REASONS = ("queue_full", "delivery_failed", "closed", "invalid")
# A batch not acknowledged within this is dropped (counted): the sender moves on rather than holding
# impressions of a Kafka outage forever, and the queue behind it stays bounded.
SEND_TIMEOUT_S = 10.0
# The sender wakes at least this often to notice ``close`` while the queue is empty.
IDLE_WAKE_S = 0.2
LOG_EVERY_S = 60.0
YIELD_EVERY = 32


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
        """Queue one impression for sending; False (counted) when it cannot be. Never blocks or raises."""

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

    def queued(self) -> None:
        with self._lock:
            self._counts.queued += 1

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
    """A bounded queue drained by one daemon thread that produces batches to ``topic``."""

    def __init__(
        self,
        producer: ResilientProducer,
        topic: str,
        *,
        queue_max: int,
        batch_max: int,
        linger_s: float,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.send_timeout_s = send_timeout_s
        # A plain deque, not queue.Queue: append and popleft are atomic, and a put wakes nobody. The
        # sender polls every linger_s instead of being woken per request: each wake-up takes the GIL
        # from the event loop (measured: serving p99 3.5x higher with a per-record wake-up at 1k rps).
        self._queue: deque[Offered] = deque()
        self._queue_max = queue_max
        self._counter = _Counter()
        self._closing = threading.Event()
        self._deadline = float("inf")  # set by close: the sender gives up on a send after it
        self._thread = threading.Thread(target=self._run, name="impression-sender", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, kafka: KafkaSettings, impressions: ImpressionSettings) -> KafkaImpressionLog:
        from storage.kafka import make_resilient_producer

        # librdkafka gives up on a message after the send timeout too: an impression never lingers
        # in the client (to arrive minutes late) after it was counted as dropped.
        overrides: dict[str, Any] = {
            "message.timeout.ms": int(SEND_TIMEOUT_S * 1000),
            # Impressions are many small, similar JSON records: lz4 batches cost the brokers (and the
            # network) far less per record, and librdkafka's own linger groups a sender batch whole.
            "compression.type": "lz4",
            "linger.ms": max(5, int(impressions.linger_s * 1000)),
        }
        return cls(
            make_resilient_producer(kafka, name="impressions", **overrides),
            kafka.topics.impressions,
            queue_max=impressions.queue_max,
            batch_max=impressions.batch_max,
            linger_s=impressions.linger_s,
        )

    # ------------------------------------------------------------ request side

    def offer(self, impression: Offered) -> bool:
        if self._closing.is_set():
            self._counter.dropped("closed")
            return False
        # len then append is not one atomic step: a race overshoots the bound by a record or two.
        if len(self._queue) >= self._queue_max:
            self._counter.dropped("queue_full", detail=f"queue of {self._queue_max} is full")
            return False
        self._queue.append(impression)
        self._counter.queued()
        return True

    def counts(self) -> ImpressionCounts:
        return self._counter.snapshot()

    # ------------------------------------------------------------ sender thread

    def _take(self) -> list[Offered]:
        """Up to ``batch_max`` records, after waiting ``linger_s`` (at most ``IDLE_WAKE_S``) for them."""
        if not self._queue:
            # Closing: no lingering; otherwise one wake-up per period, however many records arrive.
            self._closing.wait(min(IDLE_WAKE_S, max(self.linger_s, 0.001)))
        batch: list[Offered] = []
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.popleft())
            except IndexError:
                break
        return batch

    def _messages(self, batch: list[Offered]) -> list[OutMessage]:
        messages: list[OutMessage] = []
        for n, record in enumerate(batch, 1):
            if n % YIELD_EVERY == 0:
                # Hand the GIL back to the event loop now and then: encoding a whole batch in one go
                # would make requests wait for up to the interpreter's switch interval (5 ms).
                time.sleep(0)
            try:
                if isinstance(record, Impression):
                    messages.append((record.key, record.to_json(), None))
                else:
                    key, value = record.encode()
                    messages.append((key, value, None))
            except Exception as exc:  # a draft that builds no valid record is a bug: count, log, go on
                self._counter.dropped("invalid", detail=f"{type(exc).__name__}: {exc}")
        return messages

    def _send(self, messages: list[OutMessage]) -> None:
        delivery = Delivery(list(messages))
        try:
            self.producer.deliver(
                self.topic,
                delivery,
                timeout_s=self.send_timeout_s,
                should_stop=lambda: time.monotonic() >= self._deadline,
            )
        except SendFailed as exc:
            # Counted as dropped, so make it so: what is still queued in the client is not sent later.
            self._purge_queued()
            done = len(delivery.done)
            self._counter.sent(done)
            self._counter.dropped("delivery_failed", len(messages) - done, detail=str(exc))
            return
        except Exception as exc:
            log.exception("event=impression_send_crashed")
            self._counter.dropped("delivery_failed", len(messages), detail=f"{type(exc).__name__}: {exc}")
            return
        self._counter.sent(len(messages))

    def _purge_queued(self) -> None:
        purge = getattr(self.producer.producer, "purge", None)
        if purge is None:
            return
        try:
            purge(in_queue=True, in_flight=False, blocking=False)
        except Exception as exc:
            log.debug("event=impression_purge_failed error=%s", exc)

    def _run(self) -> None:
        while True:
            try:
                batch = self._take()
                if batch:
                    if time.monotonic() >= self._deadline:
                        self._counter.dropped("closed", len(batch), detail="close timeout ran out")
                        continue
                    messages = self._messages(batch)
                    if messages:
                        self._send(messages)
                elif self._closing.is_set():
                    return
            except Exception:  # the sender must outlive any surprise; requests depend on it draining
                log.exception("event=impression_sender_failed")
                time.sleep(IDLE_WAKE_S)

    # ------------------------------------------------------------ shutdown

    def close(self, timeout_s: float) -> None:
        if self._closing.is_set():
            return
        start = time.monotonic()
        self._deadline = start + timeout_s
        self._closing.set()
        self._thread.join(timeout_s + IDLE_WAKE_S)
        left = 0
        while True:  # whatever the sender could not take in time
            try:
                self._queue.popleft()
            except IndexError:
                break
            left += 1
        if left:
            self._counter.dropped("closed", left, detail="close timeout ran out")
        self.producer.close(max(0.0, self._deadline - time.monotonic()))
        counts = self.counts()
        log.info(
            "event=impression_log_closed sent=%d dropped=%s seconds=%.2f",
            counts.sent,
            counts.dropped,
            time.monotonic() - start,
        )
