"""Redis Cluster readiness of the key layout (``core.keys``), checked without a server.

Redis Cluster runs a command, a script or a transaction only when every key it declares is in one
hash slot. These tests compute slots with redis-py's own ``key_slot`` for the key sets streamrec
actually sends: every key of one user, the shared keys, serving's one-round-trip Lua read, the
consumer's guarded apply and its per-slot parts on a cluster, the rebuild's final step, the guard
read, popularity merges and erasure.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr
from redis.crc import key_slot

from consumer.plans import PlannedEvent, plan_events, plan_item_updates
from core.events import ItemUpdate
from core.keys import Keys
from core.realtime_ops import Op
from core.settings import EventWeights, RedisSettings
from storage.realtime_guard import UNGUARDED_OPS, apply_script_call, ops_script_call, split_by_slot
from storage.realtime_reader import RedisRealtimeReader
from storage.realtime_snapshot import SnapshotBuilder
from storage.realtime_state import InMemoryRealtimeState

NOW_S = 1_700_000_000.0
PREFIXES = ["sr:", "t1234abcd:", "", "a{b", "x}y:", "{tenant}:"]
USERS = ["u1", "alice", "42", "ü-ß", "with:colon", "br{ace", "cl}ose", "{tag}", "a}b{c}", " "]


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


def shared_keys(k: Keys) -> list[str]:
    return [
        k.pop_all(),
        k.pop_bucket("1h", 1_699_999_800),
        k.item("i1"),
        k.item("{weird}"),
        k.category("kitchen"),
        k.unavailable(),
        k.applied("events", 3),
        k.generation(),
        k.rebuild_lock(),
        k.catalog_version(),
        k.erasures(),
        k.tmp("pop:1h:42"),
    ]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("user", USERS)
def test_every_key_of_one_user_is_in_one_slot(prefix: str, user: str) -> None:
    k = Keys(prefix)
    assert k.user_keys(user) == [*k.user_state_keys(user), k.recs_cache(user)]
    assert len(slots(k.user_keys(user))) == 1


@pytest.mark.parametrize("prefix", PREFIXES)
def test_shared_keys_are_in_one_slot(prefix: str) -> None:
    assert len(slots(shared_keys(Keys(prefix)))) == 1


def test_users_spread_over_slots_and_avoid_the_shared_one() -> None:
    k = Keys("sr:")
    user_slots = [key_slot(k.recent(f"user-{n}").encode()) for n in range(1000)]
    assert len(set(user_slots)) > 900  # the tag is the user id: users land all over the slot space
    assert key_slot(k.generation().encode()) not in user_slots[:50]


def test_keys_parse_back_and_the_rebuild_keeps_exactly_markers_offsets_and_meta() -> None:
    k = Keys("p:")
    assert k.split_user(k.recent("a}b")) == ("a}b", "recent")
    assert k.split_user(k.recs_cache("u")) == ("u", "cache:recs")
    assert k.shared_rest(k.applied("ev", 0)) == "applied:ev:0"
    keep = [k.marker("u"), k.applied("ev", 0), k.generation(), k.rebuild_lock()]
    drop = [k.recent("u"), k.seen("u"), k.recs_cache("u"), k.pop_all(), k.item("i"), k.erasures()]
    # The layout before hash tags: stale after the upgrade, so a rebuild removes all of it.
    old = ["p:user:u:marker", "p:user:u:recent", "p:applied:ev:0", "p:meta:generation", "p:pop:all"]
    assert [k.survives_rebuild(x) for x in keep] == [True] * 4
    assert [k.survives_rebuild(x) for x in drop + old] == [False] * (len(drop) + len(old))
    state = InMemoryRealtimeState("p:")
    state.strings.update({x: "1" for x in keep + old})
    state.sets[k.seen("u")] = {"i"}
    assert state.clear_derived() == len(old) + 1
    assert sorted(state.strings) == sorted(keep)


def test_snapshot_reads_the_tagged_layout() -> None:
    k = Keys("p:")
    builder = SnapshotBuilder("p:", NOW_S)
    assert builder.kind(k.recent("a}b")) == "zset" and builder.kind(k.marker("u")) is None
    assert builder.kind("p:user:u:recent") is None  # old layout: not part of the state any more
    builder.add(k.recent("a}b"), {"m": 1.0})
    builder.add(k.seen("u"), {"i2", "i1"})
    builder.add(k.category("c"), {"i1"})
    assert builder.snap["recent"] == {"a}b": [["m", 1.0]]}
    assert builder.snap["seen"] == {"u": ["i1", "i2"]}
    assert builder.snap["categories"] == {"c": ["i1"]}


def batch_plan(k: Keys) -> list[Op]:
    events = [
        PlannedEvent(f"e{n}", f"user-{n % 7}", f"i{n % 3}", ("view", "purchase")[n % 2], int(NOW_S * 1000))
        for n in range(40)
    ]
    ops = plan_events(k, events, weights=EventWeights(), recent_max=5, now_s=NOW_S)
    updates = [
        ItemUpdate(item_id="i1", category="kitchen", available=False),
        ItemUpdate(item_id="i2", title="Mug", price=2.5),
    ]
    return ops + plan_item_updates(k, updates, {"i1": "garden"})


def test_consumer_apply_on_a_cluster_touches_one_slot_per_script() -> None:
    k = Keys("sr:")
    ops = batch_plan(k)
    shared_slot = key_slot(k.generation().encode())
    shared, per_slot = split_by_slot(ops, shared_slot)
    assert len(per_slot) == 7  # one script per user
    for group in per_slot:
        keys, _argv = ops_script_call(group)
        assert len(slots(keys)) == 1
        assert {op.name for op in group} <= UNGUARDED_OPS
    keys, _argv = apply_script_call(
        k.generation(), k.applied, shared, {("ev", 0): 9}, {("ev", 0): 3, ("ev", 1): -1}, "g1"
    )
    assert slots(keys) == {shared_slot}
    # Nothing lost in the split, and each slot keeps the plan's order (trim after the adds).
    assert sorted(map(repr, shared + [op for g in per_slot for op in g])) == sorted(map(repr, ops))
    for group in per_slot:
        assert [op for op in ops if op in group] == group


def test_split_refuses_a_non_idempotent_op_outside_the_shared_slot() -> None:
    k = Keys("sr:")
    with pytest.raises(ValueError, match="not idempotent"):
        split_by_slot([Op("zincrby", k.recent("u"), ("i", 1.0))], key_slot(k.generation().encode()))


def test_rebuild_guard_lock_and_popularity_key_sets_stay_in_the_shared_slot() -> None:
    k = Keys("sr:")
    finish = [k.generation(), *(k.applied("ev", p) for p in range(8))]  # finish_rebuild's KEYS
    guard = [k.generation(), k.applied("ev", 0), k.applied("items", 1)]  # guard's one MGET
    assert len(slots(finish)) == 1 and slots(guard) == slots(finish) == slots([k.rebuild_lock()])
    reader = RedisRealtimeReader(RedisSettings(key_prefix="sr:"), client=_NoClient())
    source, build = reader._source_key("1h", NOW_S)
    merge_keys = [source, *build[0][2]]  # ZUNIONSTORE dest + its bucket sources
    assert slots(merge_keys) == slots([k.category("games"), k.tmp("popcat:1h:1:games")]) == slots(finish)


class _NoClient:
    """Stands in for the Redis client where a test only looks at the keys a reader would send."""

    connection_pool = None


def test_serving_lua_read_declares_one_user_slot() -> None:
    sent: list[tuple[Any, list[str]]] = []

    async def run() -> None:
        reader = RedisRealtimeReader(RedisSettings(url=SecretStr("redis://x:1/0")), client=_NoClient())

        def capture(script: Any, keys: list[str], args: Any = ()) -> Any:
            sent.append((script, list(keys)))
            future = asyncio.get_running_loop().create_future()
            future.set_result([b"3", b"", [], [], []])
            return future

        reader.batcher.submit_script = capture  # type: ignore[method-assign]
        for user in USERS:
            await reader.user_snapshot(user, "k=10", 5, with_seen=True)

    asyncio.run(run())
    assert len(sent) == len(USERS)
    for (_script, keys), user in zip(sent, USERS, strict=True):
        assert sorted(keys) == sorted(Keys("sr:").user_keys(user))
        assert len(slots(keys)) == 1
