"""The ingest bench's sink ceiling stores events through the consumer's own batch processing."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.realtime_state import RedisRealtimeState
from tooling.bench.common import BenchRun, storefront
from tooling.bench.ingest import sink_ceiling


def test_the_ceiling_stores_every_event_and_applies_its_redis_effects(
    settings: Settings, mongo_client: Any
) -> None:
    run = BenchRun(settings, Console(quiet=True))
    events = list(storefront(60, seed=7).events())
    topic = settings.kafka.topics.events
    try:
        first = sink_ceiling(run, events[:30], batch_size=8)
        second = sink_ceiling(run, events[30:], batch_size=8, offset=30)
        assert first > 0 and second > 0
        assert run.extra_databases == [settings.mongo.database + "_ceiling"]  # registered once for cleanup

        store = MongoEventStore(run.mongo[run.extra_databases[0]])
        assert sorted(store.event_ids()) == sorted(e.event_id for e in events)
        state = RedisRealtimeState(run.redis, run.extra_prefixes[0])
        guard = state.guard([(topic, 0)])
        assert guard.generation is not None
        # The consumer's guarded Redis step ran for every batch: the applied offset is the last one.
        assert guard.applied == {(topic, 0): 59}
        # Each shopper's recent-events list holds one member per event (recent_max is far above 60).
        users = {e.user_id for e in events}
        recent = sum(int(run.redis.zcard(state.keys.recent(u))) for u in users)
        assert recent == len(events)
    finally:
        mongo_client.drop_database(settings.mongo.database + "_ceiling")
        run.mongo.close()
