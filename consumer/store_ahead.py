"""While Redis is down the consumer keeps storing: MongoDB (the system of record) first, Redis later.

A batch whose Redis step fails has already been stored in MongoDB (and its dead letters sent). Retrying
that one batch until Redis returns would stop ingestion for the whole outage, so the runner goes on
consuming instead: later batches are stored in MongoDB with their Redis effects skipped, and nothing is
committed. The first offset read in this mode is remembered per partition. Once Redis answers again the
runner seeks each of those partitions back to it: the records come again, MongoDB reports each as
already stored from this very record (a redelivery, ``consumer.batch.settle_events``), and their
effects are applied once through the usual guarded step. Nothing is held in memory but one offset per
partition, and a crash at any point leaves the uncommitted records to be read again.

Effects must never be applied to a later record of a partition before its skipped ones: the applied
offset would move past them and they would count as done. So while this mode is on, every batch of
every partition skips Redis, even if Redis came back a moment ago; only the rewind turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consumer.batch import RawMessage
from core.realtime_ops import TopicPartition


@dataclass
class StoreAhead:
    """Which partitions to read again, from where, once Redis is back."""

    probe_every_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    replay_from: dict[TopicPartition, int] = field(default_factory=dict)
    _probed_at: float = float("-inf")

    @property
    def active(self) -> bool:
        return bool(self.replay_from)

    def note(self, messages: Iterable[RawMessage]) -> None:
        """Remember the lowest offset per partition of records stored without their effects."""
        for msg in messages:
            known = self.replay_from.get(msg.tp)
            if known is None or msg.offset < known:
                self.replay_from[msg.tp] = msg.offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this member no longer owns: their new owner starts at the committed offset,
        which is at or below the remembered one (nothing past it was committed)."""
        for tp in partitions:
            self.replay_from.pop(tp, None)

    def probe_due(self) -> bool:
        now = self.clock()
        if now - self._probed_at < self.probe_every_s:
            return False
        self._probed_at = now
        return True

    def take(self) -> dict[TopicPartition, int]:
        """The offsets to seek to; the mode ends."""
        out, self.replay_from = self.replay_from, {}
        self._probed_at = float("-inf")
        return out
