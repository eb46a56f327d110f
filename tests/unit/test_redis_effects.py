"""Guarded Redis effects against the in-memory twins: zombies, Redis outages, an emptied Redis."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from consumer.batch import RawMessage
from consumer.processor import BatchProcessor, InMemoryDeadLetterSink, SinkUnavailable
from consumer.rebuild import diff_snapshots, rebuild_cache
from core.realtime_ops import ApplyStatus, Guard, Op
from storage.event_store_memory import InMemoryEventStore
from storage.impressions import InMemoryImpressionStore
from storage.realtime_state import InMemoryRealtimeState
from tests.unit.test_consumer_processor import NOW_S, ev, item, make_settings


def processor(
    store: InMemoryEventStore, state: InMemoryRealtimeState, dlq: InMemoryDeadLetterSink | None = None
) -> BatchProcessor:
    proc = BatchProcessor(
        make_settings(),
        store,
        state,
        dlq or InMemoryDeadLetterSink(),
        clock=lambda: NOW_S,
        impressions=InMemoryImpressionStore(),
    )
    proc.effects.rebuild_settle_s = 0.0  # no other member inserts here
    return proc


def established() -> InMemoryRealtimeState:
    state = InMemoryRealtimeState("sr:")
    state.finish_rebuild("g0", {})
    return state


def reference(store: InMemoryEventStore) -> InMemoryRealtimeState:
    rebuilt = InMemoryRealtimeState("rb:")
    rebuild_cache(make_settings(), store, rebuilt, now_s=NOW_S)
    return rebuilt


class HookedState(InMemoryRealtimeState):
    """A view of another twin's data that runs ``hook`` once, right after its first guard read."""

    def __init__(self, shared: InMemoryRealtimeState, hook: Callable[[], object]) -> None:
        self.__dict__ = shared.__dict__  # same keys, same data: two clients of one Redis
        self._hook: Callable[[], object] | None = hook

    def guard(self, partitions: Iterable[tuple[str, int]]) -> Guard:
        guard = super().guard(partitions)
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return guard


def rebuilds() -> float:
    return REGISTRY.get_sample_value("streamrec_consumer_redis_rebuilds_total") or 0.0


def test_guarded_apply_writes_nothing_when_the_guard_moved():
    state = established()
    op = [Op("zincrby", "sr:{shared}:pop:all", ("i1", 1.0))]
    assert state.apply(op, {("ev", 0): 4}, expected={("ev", 0): -1}, generation="g0") is ApplyStatus.OK
    assert (
        state.apply(op, {("ev", 0): 4}, expected={("ev", 0): -1}, generation="g0")
        is ApplyStatus.STALE_OFFSETS
    )
    assert (
        state.apply(op, {("ev", 0): 9}, expected={("ev", 0): 4}, generation="g1")
        is ApplyStatus.STALE_GENERATION
    )
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0}
    assert state.applied_offsets([("ev", 0)]) == {("ev", 0): 4}
    state.finish_rebuild("g2", {("ev", 0): 2, ("ev", 1): 7})  # offsets only move up
    assert state.guard([("ev", 0), ("ev", 1)]) == Guard("g2", {("ev", 0): 4, ("ev", 1): 7})


def test_zombie_applying_after_its_successor_read_changes_nothing():
    store, shared = InMemoryEventStore(), established()
    batch = [ev("e1", 0), ev("e2", 1, item="i2", etype="purchase"), ev("e3", 2, user="u2")]
    successor = processor(store, shared)
    # The zombie reads the guard, then the successor stores and applies the same batch, then the
    # zombie goes on with what it read: its plan is refused and re-made from the new offsets.
    zombie = processor(store, HookedState(shared, lambda: successor.process(batch)))
    zombie.process(batch)
    processor(store, shared).process(batch)  # and once more, sequentially, for good measure
    snap = shared.snapshot(NOW_S)
    assert snap["pop"]["all"] == {"i1": 2.0, "i2": 5.0}  # view 1 + view 1, purchase 5
    assert len(snap["recent"]["u1"]) == 2 and len(snap["recent"]["u2"]) == 1
    assert diff_snapshots(snap, reference(store).snapshot(NOW_S)) == []


def test_zombie_with_a_longer_batch_applies_only_the_records_its_successor_did_not():
    store, shared = InMemoryEventStore(), established()
    short, longer = [ev("e1", 0), ev("e2", 1)], [ev("e1", 0), ev("e2", 1), ev("e3", 2, item="i3")]
    successor = processor(store, shared)
    processor(store, HookedState(shared, lambda: successor.process(short))).process(longer)
    assert shared.snapshot(NOW_S)["pop"]["all"] == {"i1": 2.0, "i3": 1.0}
    assert shared.applied_offsets([("ev", 0)]) == {("ev", 0): 2}


def test_redis_outage_stores_in_mongo_and_dead_letters_once_then_applies_effects_once():
    store, state, dlq = InMemoryEventStore(), established(), InMemoryDeadLetterSink()
    proc = processor(store, state, dlq)
    proc.process([ev("e0", 0)])  # the member has seen partition 0's applied offset
    state.fail_with = RedisConnectionError("down")
    batch = [
        ev("e1", 1),
        RawMessage("ev", 0, 2, b"u1", b"{oops"),
        ev("e3", 3, item="i3"),
        item("i9", 0, category="c"),
    ]
    for _ in range(3):  # retried while Redis stays down
        with pytest.raises(SinkUnavailable) as err:
            proc.process(batch)
        assert err.value.sink == "redis"
    assert set(store.events) == {"e0", "e1", "e3"}  # the system of record did not wait
    assert store.get_items(["i9"])["i9"]["category"] == "c"
    assert [dict(h)["source_offset"] for _k, _v, h in dlq.records] == [b"2"]  # sent once
    state.fail_with = None
    out = proc.process(batch)
    assert out.counts[("view", "redelivered")] == 2
    assert len(dlq.records) == 1
    snap = state.snapshot(NOW_S)
    assert snap["pop"]["all"] == {"i1": 2.0, "i3": 1.0}
    assert snap["categories"] == {"c": ["i9"]}
    assert state.applied_offsets([("ev", 0), ("it", 0)]) == {("ev", 0): 3, ("it", 0): 0}
    proc.process(batch)  # the commit was lost: nothing changes
    assert state.snapshot(NOW_S) == snap and len(dlq.records) == 1


def test_dead_letters_a_member_cannot_judge_wait_for_redis():
    store, state, dlq = InMemoryEventStore(), established(), InMemoryDeadLetterSink()
    state.apply([], {("ev", 0): 5})  # dead-lettered and applied by an earlier member
    proc = processor(store, state, dlq)
    state.fail_with = RedisConnectionError("down")
    redelivered_poison = RawMessage("ev", 0, 5, b"u1", b"{oops")
    with pytest.raises(SinkUnavailable):
        proc.process([redelivered_poison, ev("e6", 6)])
    assert dlq.records == [] and set(store.events) == {"e6"}
    state.fail_with = None
    proc.process([redelivered_poison, ev("e6", 6)])
    assert dlq.records == []  # at or below the applied offset: it went out before
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0}


def test_emptied_redis_is_rebuilt_from_mongo_before_new_effects(caplog):
    caplog.set_level(logging.INFO)
    store, state, dlq = InMemoryEventStore(), established(), InMemoryDeadLetterSink()
    proc = processor(store, state, dlq)
    first_p1 = [ev("a1", 0, p=1, user="u3", etype="purchase"), ev("a2", 1, p=1, item="i2")]
    proc.process([ev("e1", 0), ev("e2", 1, item="i2"), item("i1", 0, category="c", available=False)])
    proc.process(first_p1)
    before = rebuilds()
    state.flush_all()  # Redis restarted without persistence
    proc.process([ev("e3", 2, item="i3"), RawMessage("ev", 0, 3, b"u1", b"{oops"), ev("e4", 4)])
    assert rebuilds() == before + 1
    assert "event=redis_rebuilt reason=generation_missing events=6" in caplog.text
    assert [dict(h)["source_offset"] for _k, _v, h in dlq.records] == [b"3"]
    # Partition 1's last batch comes again (its commit was lost before the flush): it is in the
    # rebuilt state already and must not count twice.
    proc.process(first_p1)
    proc.process([ev("e5", 5, item="i5")])
    snap = state.snapshot(NOW_S)
    assert sorted(snap["pop"]["all"]) == ["i1", "i2", "i3", "i5"]
    assert diff_snapshots(snap, reference(store).snapshot(NOW_S)) == []
    assert snap["unavailable"] == ["i1"]
    assert state.applied_offsets([("ev", 0), ("ev", 1)]) == {("ev", 0): 5, ("ev", 1): 1}


def test_a_rebuild_held_by_another_process_makes_the_batch_wait_and_mongo_goes_on():
    store, state = InMemoryEventStore(), InMemoryRealtimeState("sr:")  # empty: no generation
    other = state.acquire_rebuild_lock(60)
    assert other is not None
    proc = processor(store, state)
    with pytest.raises(SinkUnavailable) as err:
        proc.process([ev("e1", 0)])
    assert err.value.sink == "redis" and "rebuilding" in str(err.value)
    assert set(store.events) == {"e1"} and state.snapshot(NOW_S)["pop"]["all"] == {}
    other.release()
    proc.process([ev("e1", 0), ev("e2", 1)])
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 2.0}


def test_events_stored_while_a_rebuild_runs_are_left_to_their_consumer():
    store, state = InMemoryEventStore(), established()
    proc = processor(store, state)
    proc.process([ev("e1", 0)])
    late = [ev("e1", 0), ev("e2", 1, item="i2")]
    real_max = store.max_source_offsets

    def max_then_insert() -> dict[tuple[str, int], int]:
        upto = real_max()
        # Another member stores its next batch right after the rebuild read the offsets.
        store.insert_events(
            [
                {
                    **store.events["e1"],
                    "_id": "e2",
                    "item_id": "i2",
                    "src": {"topic": "ev", "partition": 0, "offset": 1},
                }
            ]
        )
        return upto

    store.max_source_offsets = max_then_insert  # type: ignore[method-assign]
    state.drop_generation()
    rebuild_cache(make_settings(), store, state, now_s=NOW_S)
    store.max_source_offsets = real_max  # type: ignore[method-assign]
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0}  # e2 is above the rebuild's offsets
    proc.process(late)  # that member's batch: e2 is applied by it, once
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0, "i2": 1.0}
    assert diff_snapshots(state.snapshot(NOW_S), reference(store).snapshot(NOW_S)) == []


def test_a_stop_request_ends_a_rebuild_between_batches_and_the_next_one_starts_over():
    store, state = InMemoryEventStore(), InMemoryRealtimeState("sr:")
    proc = processor(store, state)
    stop = {"now": True}
    proc.effects.should_stop = lambda: stop["now"]
    with pytest.raises(SinkUnavailable) as err:
        proc.process([ev("e1", 0), ev("e2", 1, item="i2")])
    assert "stopped before the end" in str(err.value)
    assert state.guard([]).generation is None and state.lock_owner is None  # nothing half-done kept
    stop["now"] = False
    proc.process([ev("e1", 0), ev("e2", 1, item="i2")])
    assert state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0, "i2": 1.0}
    assert state.guard([("ev", 0)]).applied == {("ev", 0): 1}


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[RawMessage], list[tuple[int, str]]]:
    """Records over two event partitions and the items topic, and (batch size, what happens) steps."""
    n = draw(st.integers(20, 80))
    offsets = {0: 0, 1: 0, "it": 0}
    records: list[RawMessage] = []
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            iid = f"i{draw(st.integers(0, 4))}"
            cat = draw(st.sampled_from("ab"))
            records.append(item(iid, int(offsets["it"]), category=cat, available=draw(st.booleans())))
            offsets["it"] += 1
            continue
        p = draw(st.integers(0, 1))
        eid = f"e{i}" if draw(st.integers(0, 19)) else f"e{draw(st.integers(0, i))}"  # some reused ids
        etype = draw(st.sampled_from(["view", "click", "purchase", "rate"]))
        user, it = f"u{draw(st.integers(0, 5))}", f"i{draw(st.integers(0, 4))}"
        records.append(
            ev(
                eid,
                int(offsets[p]),
                user=user,
                item=it,
                etype=etype,
                age_s=draw(st.integers(1, 9 * 86400)),
                p=p,
            )
        )
        offsets[p] += 1
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(1, 15), st.sampled_from(["ok", "ok", "redeliver", "zombie", "flush", "outage"])
            ),
            min_size=1,
            max_size=40,
        )
    )
    return records, steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_histories())
def test_any_mix_of_zombies_redeliveries_outages_and_flushes_applies_each_effect_once(history):
    records, steps = history
    store, state = InMemoryEventStore(), InMemoryRealtimeState("sr:")
    main, successor = processor(store, state), processor(store, state)
    pos = 0
    for size, what in steps:
        batch = records[pos : pos + size]
        if not batch:
            break
        if what == "zombie":  # the successor applies the batch between the zombie's read and write
            zombie = processor(store, HookedState(state, functools.partial(successor.process, batch)))
            zombie.process(batch)
        elif what == "outage":  # Redis down for a while: Mongo goes on, effects follow
            state.fail_with = RedisConnectionError("down")
            with pytest.raises(SinkUnavailable):
                main.process(batch)
            state.fail_with = None
            main.process(batch)
        else:
            if what == "flush":
                state.flush_all()
            main.process(batch)
            if what == "redeliver":  # crash before the commit: the same records again
                main.process(batch)
        pos += size
    assert diff_snapshots(state.snapshot(NOW_S), reference(store).snapshot(NOW_S)) == []


def test_startup_rebuilds_an_empty_redis_once_and_leaves_trouble_to_the_first_batch(caplog) -> None:
    """A consumer starting on a Redis without generation marker (restarted empty, or the key layout
    changed under an upgrade) rebuilds before any batch, so serving does not read "no history"."""
    store = InMemoryEventStore()
    ts = datetime.fromtimestamp(NOW_S, UTC)
    store.insert_events(
        [{"_id": "e1", "event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": ts}]
    )
    state = InMemoryRealtimeState("sr:")
    proc = processor(store, state)
    before = rebuilds()
    assert proc.effects.rebuild_if_empty(NOW_S) is True
    assert state.guard([]).generation is not None
    assert state.snapshot(NOW_S)["seen"] == {"u1": ["i1"]}
    assert proc.effects.rebuild_if_empty(NOW_S) is False  # marker present: nothing to do
    assert rebuilds() == before + 1
    down = InMemoryRealtimeState("sr:")
    down.fail_with = RedisConnectionError("down")
    with caplog.at_level(logging.WARNING):
        assert processor(store, down).effects.rebuild_if_empty(NOW_S) is False
    assert "event=startup_rebuild_skipped" in caplog.text
