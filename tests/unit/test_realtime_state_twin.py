"""The in-memory RealtimeState twin keeps Redis semantics the unit tests rely on."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.keys import WINDOWS
from core.realtime_ops import Op
from storage.realtime_state import InMemoryRealtimeState

NOW_S = 1_714_564_800.0


def test_zremrangebyrank_matches_redis_for_short_and_long_sets():
    state = InMemoryRealtimeState("p:")
    state.apply([Op("zadd", "p:z", ("a", 1)), Op("zremrangebyrank", "p:z", (0, -4))], {})
    assert state.zsets["p:z"] == {"a": 1.0}  # fewer members than kept: nothing removed
    state.apply([Op("zadd", "p:z", (m, s)) for m, s in (("b", 2), ("c", 3), ("d", 4))], {})
    state.apply([Op("zremrangebyrank", "p:z", (0, -4))], {})
    assert state.zsets["p:z"] == {"b": 2.0, "c": 3.0, "d": 4.0}


def test_empty_sets_disappear_like_in_redis():
    state = InMemoryRealtimeState("p:")
    state.apply([Op("sadd", "p:s", ("x",)), Op("srem", "p:s", ("x",))], {})
    assert "p:s" not in state.sets


def test_snapshot_keeps_only_live_buckets_and_rounds_scores():
    win = WINDOWS["1h"]
    live = win.bucket_start(NOW_S)
    dead = win.bucket_start(NOW_S - 2 * win.length_s)
    state = InMemoryRealtimeState("p:")
    state.apply(
        [
            Op("zincrby", f"p:{{shared}}:pop:1h:{live}", ("i", 0.1)),
            Op("zincrby", f"p:{{shared}}:pop:1h:{live}", ("i", 0.2)),
            Op("zincrby", f"p:{{shared}}:pop:1h:{dead}", ("i", 1.0)),
        ],
        {},
    )
    assert state.snapshot(NOW_S)["pop"]["1h"] == {live: {"i": 0.3}}


def test_clear_derived_keeps_markers_and_applied_offsets():
    state = InMemoryRealtimeState("p:")
    state.apply([Op("incr", "p:user:{u}:marker"), Op("sadd", "p:user:{u}:seen", ("i",))], {("t", 0): 5})
    assert state.clear_derived() == 1
    assert state.marker("u") == 1
    assert state.applied_offsets([("t", 0)]) == {("t", 0): 5}


def test_outage_simulation_raises_and_changes_nothing():
    state = InMemoryRealtimeState("p:")
    state.fail_with = RedisConnectionError("down")
    with pytest.raises(RedisConnectionError):
        state.apply([Op("incr", "p:user:{u}:marker")], {("t", 0): 1})
    assert state.strings == {}
