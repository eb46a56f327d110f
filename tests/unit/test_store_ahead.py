"""consumer.store_ahead: which partitions to read again once Redis is back, and the processor's
``effects=False`` pass that stores a batch in MongoDB without touching Redis."""

from __future__ import annotations

from consumer.batch import RawMessage
from consumer.store_ahead import StoreAhead


def msg(partition: int, offset: int) -> RawMessage:
    return RawMessage("ev", partition, offset, b"u", b"{}")


def test_remembers_the_lowest_offset_per_partition_until_taken() -> None:
    ahead = StoreAhead()
    assert not ahead.active
    ahead.note([msg(0, 10), msg(0, 11), msg(1, 4)])
    ahead.note([msg(0, 12), msg(1, 3)])
    assert ahead.active and ahead.replay_from == {("ev", 0): 10, ("ev", 1): 3}
    ahead.forget([("ev", 1)])
    assert ahead.take() == {("ev", 0): 10}
    assert not ahead.active


def test_probes_are_rate_limited() -> None:
    now = [100.0]
    ahead = StoreAhead(probe_every_s=1.0, clock=lambda: now[0])
    assert ahead.probe_due()
    now[0] += 0.5
    assert not ahead.probe_due()
    now[0] += 0.6
    assert ahead.probe_due()


def test_batches_stored_without_effects_get_them_once_when_read_again() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tests.unit.test_consumer_processor import NOW_S, Rig, ev

    rig = Rig()
    rig.proc.process([ev("e0", 0, item="i0")])
    rig.state.fail_with = RedisConnectionError("down")
    bad = RawMessage("ev", 0, 2, b"u1", b"{oops")
    first, second = [ev("e1", 1)], [bad, ev("e2", 3, item="i2"), ev("e3", 4, item="i3")]
    calls_before = rig.state.transactions
    for batch in (first, second):
        out = rig.proc.process(batch, effects=False)
        assert out.deferred
    # Stored, and the dead letter (above the applied offset this process saw) sent, Redis untouched.
    assert set(rig.store.events) == {"e0", "e1", "e2", "e3"}
    assert len(rig.dlq.records) == 1
    assert rig.state.transactions == calls_before
    rig.state.fail_with = None
    # Read again from the first deferred offset, in two batches: every effect once, no second letter.
    rig.proc.process(first)
    rig.proc.process(second)
    snap = rig.state.snapshot(NOW_S)
    assert snap["pop"]["all"] == {"i0": 1.0, "i1": 1.0, "i2": 1.0, "i3": 1.0}
    assert len(snap["recent"]["u1"]) == 4
    assert len(rig.dlq.records) == 1
    assert rig.state.applied_offsets([("ev", 0)]) == {("ev", 0): 4}


def test_a_mongodb_failure_inside_the_redis_step_is_reported_as_mongodb() -> None:
    """An empty Redis is rebuilt from MongoDB inside the Redis step; MongoDB down there must pause
    the consumer (a MongoDB outage), not send it storing ahead (a Redis outage)."""
    import pytest
    from pymongo.errors import ServerSelectionTimeoutError

    from consumer.processor import SinkUnavailable
    from storage.realtime_state import InMemoryRealtimeState
    from tests.unit.test_consumer_processor import Rig, ev

    rig = Rig()
    rig.state = InMemoryRealtimeState("sr:")  # empty: no generation marker, so the step rebuilds
    rig.proc.state = rig.proc.effects.state = rig.state
    rig.proc.effects.rebuild_settle_s = 0.0
    original = rig.store.max_source_offsets

    def mongo_down(*args, **kwargs):
        raise ServerSelectionTimeoutError("no servers")

    rig.store.max_source_offsets = mongo_down  # type: ignore[method-assign]
    with pytest.raises(SinkUnavailable) as err:
        rig.proc.process([ev("e1", 0)])
    assert err.value.sink == "mongo"
    rig.store.max_source_offsets = original  # type: ignore[method-assign]
