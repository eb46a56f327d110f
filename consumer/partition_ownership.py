"""Explicit partition ownership (``STREAMREC_CONSUMER__PARTITIONS=i/n``): no group membership at all.

A group member that is SIGKILLed keeps its partitions until the broker notices (``session.timeout.ms``)
and the group rebalances; static membership (``group.instance.id``) removes that wait, but not every
broker implements it (the dev broker accepts the key and ignores it). A consumer that owns a fixed
share of the partitions instead assigns them itself on start: nothing waits for a session to end, so
a restarted consumer is consuming again after its own start-up. Offsets are still committed to the
group id (Kafka's "standalone consumer" commits), so a switch between the modes keeps its place.

The cost is the operator's: ``n`` consumers with distinct ``i`` must run (nothing moves a dead one's
share to the others), and two consumers given the same ``i`` both consume that share; the sinks are
idempotent, so that duplicates work, never effects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)
# New partitions (a topic created or grown after start) are picked up this often; sooner while a
# topic is still missing.
REFRESH_S = 30.0
MISSING_TOPIC_REFRESH_S = 1.0
METADATA_TIMEOUT_S = 5.0


def parse_share(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ValueError with what to fix otherwise."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"partitions share {text!r} must look like 'i/n', e.g. '0/2'") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"partitions share {text!r}: need n >= 1 and 0 <= i < n")
    return index, count


def owned(partitions: Mapping[str, Iterable[int]], index: int, count: int) -> list[tuple[str, int]]:
    """The (topic, partition) pairs of share ``index`` of ``count``: partition p when p % count == index.

    Per topic, so every topic's load is spread the same way (the events topic is keyed by user)."""
    return sorted((t, p) for t, ps in partitions.items() for p in ps if p % count == index)


class ManualAssignment:
    """Assigns this consumer's share of the partitions of ``topics`` and keeps it current."""

    def __init__(self, topics: list[str], share: str) -> None:
        self.topics = topics
        self.index, self.count = parse_share(share)
        self.assigned: set[tuple[str, int]] = set()
        self._next_at = 0.0
        self._missing = False

    def refresh(self, consumer: Consumer, *, paused: bool, force: bool = False) -> list[TopicPartition]:
        """Assign partitions of the share not yet assigned; returns them. Paused at once while the
        runner has its partitions paused (a sink outage), as a group assignment would be."""
        now = time.monotonic()
        if not force and now < self._next_at:
            return []
        try:
            found = self._partitions(consumer)
        except KafkaException as exc:
            log.warning("event=partition_metadata_failed error=%s action=retry", exc)
            self._next_at = now + MISSING_TOPIC_REFRESH_S
            return []
        # From the answer's time: a slow metadata answer must not make every loop ask again.
        self._next_at = time.monotonic() + (MISSING_TOPIC_REFRESH_S if self._missing else REFRESH_S)
        new = [
            TopicPartition(t, p)
            for t, p in owned(found, self.index, self.count)
            if (t, p) not in self.assigned
        ]
        if not new:
            return []
        # No offset given: the client starts each at its committed offset (else auto.offset.reset).
        consumer.incremental_assign(new)
        if paused:
            consumer.pause(new)
        self.assigned.update((tp.topic, tp.partition) for tp in new)
        log.info(
            "event=partitions_owned share=%d/%d partitions=%s",
            self.index,
            self.count,
            ",".join(f"{tp.topic}[{tp.partition}]" for tp in new),
        )
        return new

    def _partitions(self, consumer: Consumer) -> dict[str, list[int]]:
        # One request for the whole cluster's metadata: asking per topic waits out the timeout for a
        # topic that does not exist yet (and could ask the broker to create it).
        metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S).topics
        found: dict[str, list[int]] = {}
        self._missing = False
        for topic in self.topics:
            meta = metadata.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                self._missing = True
                continue
            found[topic] = list(meta.partitions)
        return found
