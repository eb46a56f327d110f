"""Event → Redis write plans, popularity bucket math, item mirror plans."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.plans import PlannedEvent, bucket_writes, plan_events, plan_item_updates
from core.events import ItemUpdate
from core.keys import WINDOWS, Keys
from core.realtime_ops import Op
from core.settings import EventWeights
from storage.realtime_state import InMemoryRealtimeState

KEYS = Keys("p:")
W = EventWeights()
NOW_S = 1_700_000_000.0


def ev(eid: str, user: str = "u1", item: str = "i1", etype: str = "view", ts_s: float = NOW_S, value=None):
    return PlannedEvent(eid, user, item, etype, int(ts_s * 1000), value)


def test_single_view_plan_has_every_effect():
    ops = plan_events(KEYS, [ev("e1")], weights=W, recent_max=3, now_s=NOW_S)
    names = [(o.name, o.key) for o in ops]
    assert ("zadd", "p:user:{u1}:recent") in names
    assert ("sadd", "p:user:{u1}:seen") in names
    assert ("sadd", "p:user:{u1}:purchased") not in names
    assert ("zincrby", "p:{shared}:pop:all") in names
    for name, win in WINDOWS.items():
        bucket = KEYS.pop_bucket(name, win.bucket_start(NOW_S))
        assert ("zincrby", bucket) in names
        expire = next(o for o in ops if o.name == "expireat" and o.key == bucket)
        assert expire.args == (win.bucket_start(NOW_S) + win.bucket_s + win.length_s,)
    assert Op("zremrangebyrank", "p:user:{u1}:recent", (0, -4)) in ops
    assert ops[-1] == Op("incr", "p:user:{u1}:marker")
    zadd = next(o for o in ops if o.name == "zadd")
    assert orjson.loads(zadd.args[0]) == {"e": "e1", "i": "i1", "t": "view"}
    assert zadd.args[1] == int(NOW_S * 1000)


def test_purchase_goes_to_purchased_set_and_weights_apply():
    ops = plan_events(KEYS, [ev("e1", etype="purchase")], weights=W, recent_max=3, now_s=NOW_S)
    assert Op("sadd", "p:user:{u1}:purchased", ("i1",)) in ops
    assert Op("zincrby", "p:{shared}:pop:all", ("i1", 5.0)) in ops


def test_batch_plan_coalesces_popularity_and_bumps_marker_once_per_user():
    events = [ev("e1"), ev("e2", etype="click"), ev("e3", user="u2")]
    ops = plan_events(KEYS, events, weights=W, recent_max=10, now_s=NOW_S)
    pop_all = [o for o in ops if o.key == "p:{shared}:pop:all"]
    assert pop_all == [Op("zincrby", "p:{shared}:pop:all", ("i1", 3.0))]
    markers = [o for o in ops if o.name == "incr"]
    assert sorted(o.key for o in markers) == ["p:user:{u1}:marker", "p:user:{u2}:marker"]


def test_ratings_in_one_batch_weigh_by_their_own_values_among_other_types():
    # plan_events reuses a type's weight within a batch, except a rating's, which depends on its value.
    events = [
        ev("e1", item="a", etype="rate", value=4.0),
        ev("e2", item="b", etype="rate", value=1.0),
        ev("e3", item="a", etype="view"),
        ev("e4", item="c", etype="rate"),  # no value: weight 0
        ev("e5", item="b", etype="view"),
    ]
    ops = plan_events(KEYS, events, weights=W, recent_max=10, now_s=NOW_S)
    pop_all = {o.args[0]: o.args[1] for o in ops if o.key == "p:{shared}:pop:all"}
    assert pop_all == {"a": W.rate * 4.0 + W.view, "b": W.rate * 1.0 + W.view, "c": 0.0}


def test_event_older_than_window_writes_no_bucket():
    hour = WINDOWS["1h"]
    old_ts = NOW_S - hour.length_s - 2 * hour.bucket_s
    windows = {w for w, _, _ in bucket_writes(int(old_ts * 1000), NOW_S)}
    assert windows == {"7d"}
    ancient = NOW_S - 30 * 86400
    assert bucket_writes(int(ancient * 1000), NOW_S) == []
    ops = plan_events(KEYS, [ev("e1", ts_s=ancient)], weights=W, recent_max=3, now_s=NOW_S)
    assert [o.key for o in ops if o.name == "zincrby"] == ["p:{shared}:pop:all"]


def test_bucket_kept_iff_it_is_a_live_bucket_at_now():
    for name, win in WINDOWS.items():
        live = set(win.live_buckets(NOW_S))
        for offset in range(0, win.length_s + 3 * win.bucket_s, win.bucket_s // 3):
            ts = NOW_S - offset
            written = {s for w, s, _ in bucket_writes(int(ts * 1000), NOW_S) if w == name}
            assert written == ({win.bucket_start(ts)} & live), (name, offset)


# Event times around bucket edges (multiples of 300 s, the finest bucket) and across every window.
_EDGE_MS = st.builds(
    lambda n, d: n * 300_000 + d,
    st.integers(min_value=int(NOW_S - 8 * 86400) // 300, max_value=int(NOW_S) // 300),
    st.integers(min_value=-2, max_value=2),
)
_HOUR_EDGE_MS = st.builds(
    lambda n, d: n * 300_000 + d,
    st.integers(min_value=int(NOW_S - 2 * 3600) // 300, max_value=int(NOW_S) // 300),
    st.integers(min_value=-2, max_value=2),
)
_ANY_MS = st.integers(min_value=int((NOW_S - 9 * 86400) * 1000), max_value=int(NOW_S * 1000))
_LAST_HOURS_MS = st.integers(min_value=int((NOW_S - 2 * 3600) * 1000), max_value=int(NOW_S * 1000))


@settings(max_examples=300, deadline=None)
@given(times=st.lists(st.one_of(_EDGE_MS, _HOUR_EDGE_MS, _ANY_MS, _LAST_HOURS_MS), min_size=1, max_size=40))
def test_popularity_buckets_equal_each_events_own_bucket_writes(times: list[int]) -> None:
    # plan_events shares bucket writes between events of one time slot: it must add exactly what
    # bucket_writes gives each event on its own.
    events = [PlannedEvent(f"e{n}", f"u{n % 4}", f"i{n % 5}", "view", ts) for n, ts in enumerate(times)]
    ops = plan_events(KEYS, events, weights=W, recent_max=3, now_s=NOW_S)
    want: Counter[tuple[str, str]] = Counter()
    expire: dict[str, int] = {}
    for e in events:
        for window, start, expire_at in bucket_writes(e.ts_ms, NOW_S):
            key = KEYS.pop_bucket(window, start)
            want[(key, e.item_id)] += W.view
            expire[key] = expire_at
    got = {(o.key, o.args[0]): o.args[1] for o in ops if o.name == "zincrby" and o.key != KEYS.pop_all()}
    assert got == pytest.approx(dict(want))
    assert {o.key: o.args[0] for o in ops if o.name == "expireat"} == expire


def test_recent_list_keeps_newest_n_in_any_order():
    events = [ev(f"e{i}", item=f"i{i}", ts_s=NOW_S - 100 + i) for i in range(10)]
    forward, backward = InMemoryRealtimeState("p:"), InMemoryRealtimeState("p:")
    for e in events:
        forward.apply(plan_events(KEYS, [e], weights=W, recent_max=4, now_s=NOW_S), {})
    backward.apply(plan_events(KEYS, list(reversed(events)), weights=W, recent_max=4, now_s=NOW_S), {})
    recent = forward.snapshot(NOW_S)["recent"]["u1"]
    assert [orjson.loads(m)["e"] for m, _ in recent] == ["e9", "e8", "e7", "e6"]
    assert forward.snapshot(NOW_S) == backward.snapshot(NOW_S)
    assert forward.marker("u1") == 10


def test_item_update_moves_category_and_tracks_availability():
    state = InMemoryRealtimeState("p:")
    first = ItemUpdate(item_id="i1", title="Mug", category="kitchen", price=3.5, available=True)
    state.apply(plan_item_updates(KEYS, [first], {}), {})
    move = ItemUpdate(item_id="i1", category="garden", available=False)
    ops = plan_item_updates(KEYS, [move], state.item_categories(["i1"]))
    assert Op("srem", "p:{shared}:cat:kitchen", ("i1",)) in ops
    state.apply(ops, {})
    snap = state.snapshot(NOW_S)
    assert snap["items"]["i1"] == {"title": "Mug", "category": "garden", "price": "3.5", "available": "0"}
    assert snap["categories"] == {"garden": ["i1"]}
    assert snap["unavailable"] == ["i1"]


def test_item_updates_within_one_batch_follow_category_moves():
    ups = [
        ItemUpdate(item_id="i1", category="a"),
        ItemUpdate(item_id="i1", category="b"),
        ItemUpdate(item_id="i1", price=1.0),
    ]
    state = InMemoryRealtimeState("p:")
    state.apply(plan_item_updates(KEYS, ups, {"i1": None}), {})
    assert state.snapshot(NOW_S)["categories"] == {"b": ["i1"]}
    assert state.snapshot(NOW_S)["items"]["i1"] == {"category": "b", "price": "1.0"}


def test_planned_event_from_stored_doc_matches_live():
    from datetime import UTC, datetime

    doc = {
        "_id": "e1",
        "user_id": "u",
        "item_id": "i",
        "event_type": "rate",
        "ts": datetime.fromtimestamp(NOW_S, tz=UTC),
        "ts_ms": int(NOW_S * 1000),
        "value": 4,
    }
    assert PlannedEvent.from_doc(doc) == PlannedEvent("e1", "u", "i", "rate", int(NOW_S * 1000), 4.0)
