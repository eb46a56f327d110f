"""RedisRealtimeState against a real Redis: same behaviour as the in-memory twin."""

from __future__ import annotations

import time

from consumer.plans import PlannedEvent, plan_events, plan_item_updates
from core.events import ItemUpdate
from core.keys import WINDOWS
from core.settings import EventWeights, Settings
from storage.realtime_state import InMemoryRealtimeState, RedisRealtimeState

NOW_S = time.time()


def _ops(keys, recent_max: int = 3):
    events = [
        PlannedEvent(
            f"e{i}",
            f"u{i % 2}",
            f"i{i % 4}",
            ["view", "purchase", "rate"][i % 3],
            int((NOW_S - i * 60) * 1000),
            4.0,
        )
        for i in range(12)
    ]
    ops = plan_events(keys, events, weights=EventWeights(), recent_max=recent_max, now_s=NOW_S)
    ops += plan_item_updates(
        keys,
        [
            ItemUpdate(item_id="i1", title="Mug", category="a", price=2.5),
            ItemUpdate(item_id="i2", available=False),
        ],
        {},
    )
    return ops


def test_pipeline_round_trip_matches_twin(settings: Settings, redis_client) -> None:
    state = RedisRealtimeState.from_settings(settings.redis)
    twin = InMemoryRealtimeState(settings.redis.key_prefix)
    state.apply(_ops(state.keys), {("ev", 0): 11, ("ev", 1): 4})
    twin.apply(_ops(twin.keys), {("ev", 0): 11, ("ev", 1): 4})
    assert state.snapshot(NOW_S) == twin.snapshot(NOW_S)
    snap = state.snapshot(NOW_S)
    assert len(snap["recent"]["u0"]) == 3
    assert snap["purchased"] == {"u0": ["i0", "i2"], "u1": ["i1", "i3"]}  # events 1, 4, 7, 10
    assert state.applied_offsets([("ev", 0), ("ev", 1), ("ev", 2)]) == {
        ("ev", 0): 11,
        ("ev", 1): 4,
        ("ev", 2): -1,
    }
    assert state.item_categories(["i1", "i9"]) == {"i1": "a", "i9": None}
    # Each bucket lives until its window no longer overlaps it: its end plus the window length.
    # (Absolute expiry, not TTL: a TTL shrinks with however long the session has been running.)
    buckets = list(redis_client.scan_iter(match=state.keys.shared("pop:1h:*")))
    assert buckets
    for bucket in buckets:
        start = int(bucket.rsplit(b":", 1)[1])
        assert redis_client.expiretime(bucket) == start + WINDOWS["1h"].bucket_s + WINDOWS["1h"].length_s
    assert int(redis_client.get(state.keys.marker("u0"))) == 1


def test_erase_and_clear(settings: Settings, redis_client) -> None:
    state = RedisRealtimeState.from_settings(settings.redis)
    state.apply(_ops(state.keys), {("ev", 0): 3})
    redis_client.hset(state.keys.recs_cache("u0"), "k=10", "{}")
    assert state.erase_user("u0") == 5  # recent, seen, purchased, marker, cached result
    assert redis_client.exists(state.keys.recent("u0")) == 0
    assert redis_client.exists(state.keys.recent("u1")) == 1
    state.clear_derived()
    left = sorted(k.decode() for k in redis_client.scan_iter(match=f"{settings.redis.key_prefix}*"))
    assert left == sorted([state.keys.applied("ev", 0), state.keys.marker("u1")])
