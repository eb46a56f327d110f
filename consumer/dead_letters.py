"""The consumer's dead-letter sink: records that cannot be stored go to the dead-letter topic, once."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable

from core.errors import DependencyUnavailable
from storage.errors import SendFailed
from storage.kafka_producer import Delivery, OutMessage, ResilientProducer

log = logging.getLogger(__name__)


class KafkaDeadLetterSink:
    """Dead letters through the self-healing producer; ``flush`` returns only when all are acked.

    A failed flush raises (the runner retries the whole batch with backoff, polling and paused), so
    records acknowledged by an earlier try are remembered (source coordinates and a digest of the
    record) and not sent again: a retried batch does not put the same dead letter on the topic twice.
    The digest keeps a different record at the same coordinates (a topic recreated after a broker
    lost its state starts at offset 0 again) from being taken for one already sent.
    """

    MEMORY = 100_000  # acknowledged records remembered (retries only concern recent batches)

    def __init__(
        self,
        producer: ResilientProducer,
        topic: str,
        *,
        timeout_s: float = 5.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self.should_stop = should_stop
        self._queued: list[OutMessage] = []
        self._acked: OrderedDict[tuple[bytes, ...], None] = OrderedDict()
        # Unfinished dead letters of a failed flush: a retry waits for those still in flight.
        self._delivery = Delivery([])
        self._delivery_ids: list[tuple[bytes, ...]] = []  # identities of the original records

    def send(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self._queued.append((key, value, list(headers)))

    def flush(self) -> None:
        queued, self._queued = self._queued, []
        known = set(self._delivery_ids) | self._acked.keys()
        for message in queued:
            identity = _identity(message)
            if identity not in known:
                known.add(identity)
                self._delivery.add([message])
                self._delivery_ids.append(identity)
        try:
            self.producer.deliver(
                self.topic, self._delivery, timeout_s=self.timeout_s, should_stop=self.should_stop
            )
        except SendFailed as exc:
            if exc.permanent:
                # The dead-letter topic refuses the record itself (too large for it): send the
                # headers with an empty value instead, so the record still ends up dead-lettered.
                dropped = self._delivery.replace_rejected(_without_value)
                log.error("event=dead_letter_value_dropped count=%d reason=%r", dropped, str(exc)[:300])
            raise DependencyUnavailable(f"dead-letter topic {self.topic}: {exc}") from exc
        for identity in self._delivery_ids:
            self._acked[identity] = None
        while len(self._acked) > self.MEMORY:
            self._acked.popitem(last=False)
        self._delivery = Delivery([])
        self._delivery_ids = []


def _without_value(message: OutMessage, reason: str) -> OutMessage:
    key, value, headers = message
    note = [("value_dropped", f"{len(value or b'')} bytes: {reason}"[:500].encode())]
    return key, b"", [*(headers or []), *note]


def _identity(message: OutMessage) -> tuple[bytes, ...]:
    key, value, headers = message
    found = dict(headers or [])
    digest = hashlib.blake2b(key or b"", digest_size=16)
    digest.update(b"\0")
    digest.update(value or b"")
    coordinates = (found.get(h, b"") for h in ("source_topic", "source_partition", "source_offset"))
    return (*coordinates, digest.digest())
