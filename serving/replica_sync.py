"""Keeps this replica in step with changes made through other processes, within one poll.

Every ``poll_s`` one Redis round trip (``RealtimeReader.sync``) reads the catalog version counter
(bumped by the consumer with every availability change) and the erasures announced since the last
poll (by whichever replica took the DELETE). A new catalog version refetches the unavailable set
(so /similar, /popular and the cache tag follow at once); an erasure stops this replica using the
user's embedding and cached results. Erasures are also recorded in MongoDB, which the model holder
reads at start and every 30 s: a replica that missed announcements (Redis down, stream
trimmed) still converges.
"""

from __future__ import annotations

import asyncio
import logging

from serving.model_holder import ModelHolder
from serving.popularity import RealtimeSnapshots
from storage.errors import RealtimeUnavailable
from storage.realtime_reader import RealtimeReader

log = logging.getLogger(__name__)
DEFAULT_POLL_S = 0.25


class ReplicaSyncer:
    def __init__(self, reader: RealtimeReader, snapshots: RealtimeSnapshots, holder: ModelHolder) -> None:
        self.reader = reader
        self.snapshots = snapshots
        self.holder = holder
        # From the start of the (capped) stream: erasures announced before this process started
        # count too.
        self.since = "0"
        self.catalog_version: int | None = None

    async def sync_once(self) -> None:
        """Raises ``RealtimeUnavailable`` when Redis is down; the next poll retries."""
        state = await self.reader.sync(self.since)
        for user_id in state.erasures:
            self.holder.mark_erased(user_id)
        if state.erasures:
            log.info("event=erasures_received count=%d", len(state.erasures))
        self.since = state.last_erasure_id
        if state.catalog_version != self.catalog_version:
            # Recorded only after the refetch succeeded, so a failed one is retried next poll.
            await self.snapshots.refresh_unavailable()
            self.catalog_version = state.catalog_version

    async def run(self, poll_s: float = DEFAULT_POLL_S) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except RealtimeUnavailable as exc:
                log.debug("event=replica_sync_skipped error=%s", exc)
            except Exception:
                log.exception("event=replica_sync_failed")
            await asyncio.sleep(poll_s)
