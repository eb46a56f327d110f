"""Delivery bookkeeping for ``storage.kafka_producer``: which messages are acknowledged, in flight or
refused, and how a Kafka error is classified (lost producer state, permanent, retriable)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError

# Errors that mean this producer instance's idempotence state is gone: only a new producer helps.
LOST_STATE = frozenset(
    {
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.PRODUCER_FENCED,
        KafkaError._FENCED,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError._FATAL,
        KafkaError._GAPLESS_GUARANTEE,
    }
)
# Per-message errors no retry can fix: fail the send at once instead of retrying until the deadline.
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._INVALID_ARG,
    }
)

OutMessage = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]
ErrorCallback = Callable[[KafkaError], None]


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` used here (the in-memory twin has it too)."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


@dataclass
class ProducerHealth:
    ok: bool = True
    reason: str = ""
    last_success: float | None = None  # wall-clock time of the last fully acknowledged send
    rebuilds: int = 0

    def describe(self) -> str:
        return "ok" if self.ok else f"down ({self.reason})"


@dataclass
class Delivery:
    """The delivery state of messages to one topic: which are acknowledged, in flight, or failed.

    Kept by a caller across failed sends (``ResilientProducer.deliver``), it lets a retry wait for
    messages still in flight instead of producing them a second time.
    """

    messages: list[OutMessage]
    done: set[int] = field(default_factory=set)
    inflight: dict[int, int] = field(default_factory=dict)  # index -> producer generation
    failed: dict[int, Any] = field(default_factory=dict)
    # Refused for good (too large, not authorized): not retried until the caller replaces them.
    rejected: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_error: str = ""  # the most telling reason seen, for the final error and the health

    def callback(self, index: int, generation: int) -> Callable[[Any, Any], None]:
        def delivered(err: Any, _msg: Any) -> None:
            with self.lock:
                # A report from a producer we already replaced is stale: the message was sent again.
                if self.inflight.get(index) != generation:
                    return
                del self.inflight[index]
                if err is None:
                    self.done.add(index)
                else:
                    self.failed[index] = err

        return delivered

    def add(self, messages: Iterable[OutMessage]) -> None:
        with self.lock:
            self.messages.extend(messages)

    def unsent(self) -> list[int]:
        with self.lock:
            busy = self.done | self.inflight.keys() | self.rejected.keys()
            return [i for i in range(len(self.messages)) if i not in busy]

    def replace_rejected(self, fix: Callable[[OutMessage, str], OutMessage]) -> int:
        """Replace each rejected message by ``fix(message, reason)`` so that it is sent again."""
        with self.lock:
            rejected, self.rejected = self.rejected, {}
            for index, reason in rejected.items():
                self.messages[index] = fix(self.messages[index], reason)
            return len(rejected)

    def forget_generations_before(self, generation: int) -> None:
        with self.lock:
            for index in [i for i, g in self.inflight.items() if g != generation]:
                del self.inflight[index]

    def take_failures(self) -> dict[int, Any]:
        with self.lock:
            failed, self.failed = self.failed, {}
            return failed

    @property
    def complete(self) -> bool:
        with self.lock:
            return len(self.done) == len(self.messages)


def needs_new_producer(err: Any) -> bool:
    return isinstance(err, KafkaError) and (bool(err.fatal()) or err.code() in LOST_STATE)


def is_permanent(err: Any) -> bool:
    return isinstance(err, KafkaError) and err.code() in PERMANENT


def error_text(err: Any) -> str:
    return err.str() if isinstance(err, KafkaError) else str(err)
