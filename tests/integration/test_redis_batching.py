"""CommandBatcher and the batched serving reads against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.keys import Keys
from core.settings import RedisSettings, Settings
from storage.errors import RealtimeUnavailable
from storage.realtime_reader import RedisRealtimeReader
from storage.redis_batching import CommandBatcher, LuaScript

ECHO_KEYS = LuaScript("return {KEYS[1], ARGV[1]}")


def _client(settings: Settings) -> Any:
    return aioredis.Redis.from_url(settings.redis.url.get_secret_value())


def test_concurrent_commands_share_round_trips_and_get_their_own_replies(settings: Settings) -> None:
    prefix = settings.redis.key_prefix

    async def run() -> tuple[list[Any], CommandBatcher]:
        client = _client(settings)
        batcher = CommandBatcher(client, timeout_s=2.0)
        try:
            await client.mset({f"{prefix}b{i}": f"v{i}" for i in range(50)})
            replies = await asyncio.gather(*[batcher.submit("GET", f"{prefix}b{i}") for i in range(50)])
            return list(replies), batcher
        finally:
            await batcher.aclose()
            await client.aclose()

    replies, batcher = asyncio.run(run())
    assert replies == [f"v{i}".encode() for i in range(50)]
    assert batcher.commands == 50
    assert batcher.batches == 1  # submitted in one loop turn: one pipeline


def test_a_failing_command_fails_only_its_caller(settings: Settings) -> None:
    key = f"{settings.redis.key_prefix}aset"

    async def run() -> list[Any]:
        client = _client(settings)
        batcher = CommandBatcher(client, timeout_s=2.0)
        try:
            await client.sadd(key, "x")
            return list(
                await asyncio.gather(
                    batcher.submit("GET", key),  # WRONGTYPE
                    batcher.submit("SCARD", key),
                    return_exceptions=True,
                )
            )
        finally:
            await batcher.aclose()
            await client.aclose()

    wrong, card = asyncio.run(run())
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert card == 1


def test_scripts_are_loaded_again_after_a_script_flush(settings: Settings) -> None:
    async def run() -> list[Any]:
        client = _client(settings)
        batcher = CommandBatcher(client, timeout_s=2.0)
        try:
            await client.script_flush()
            first = await batcher.submit_script(ECHO_KEYS, ["k1"], ["a1"])
            await client.script_flush()
            again = await asyncio.gather(
                *[batcher.submit_script(ECHO_KEYS, [f"k{i}"], ["z"]) for i in range(3)]
            )
            return [first, *again]
        finally:
            await batcher.aclose()
            await client.aclose()

    replies = asyncio.run(run())
    assert replies == [[b"k1", b"a1"], [b"k0", b"z"], [b"k1", b"z"], [b"k2", b"z"]]


def test_fire_and_forget_writes_land(settings: Settings, redis_client: Any) -> None:
    key = f"{settings.redis.key_prefix}ff"

    async def run() -> None:
        client = _client(settings)
        batcher = CommandBatcher(client, timeout_s=2.0)
        try:
            batcher.submit_nowait("SET", key, "1", "EX", 60)
            await batcher.submit("PING")
        finally:
            await batcher.aclose()
            await client.aclose()

    asyncio.run(run())
    assert redis_client.get(key) == b"1"
    assert 0 < redis_client.ttl(key) <= 60


def test_user_snapshot_reads_the_consumer_layout_in_one_script_call(
    settings: Settings, redis_client: Any
) -> None:
    keys = Keys(settings.redis.key_prefix)
    recent = {orjson.dumps({"e": f"e{n}", "i": f"i{n}", "t": "click"}): 1_000 + n for n in range(5)}
    redis_client.zadd(keys.recent("u1"), recent)
    redis_client.sadd(keys.purchased("u1"), "i9")
    redis_client.sadd(keys.seen("u1"), "i0", "i4", "i9")
    redis_client.set(keys.marker("u1"), 7)

    async def run() -> tuple[Any, Any, Any, Any, Any]:
        reader = RedisRealtimeReader(settings.redis)
        try:
            snap = await reader.user_snapshot("u1", "k10", 3)
            await reader.store_cached("u1", "k10", 7, b'{"items":[]}', 60)
            cached = await reader.user_snapshot("u1", "k10", 3)
            unknown = await reader.user_snapshot("nobody", None, 3)
            with_seen = await reader.user_snapshot("u1", None, 3, with_seen=True)
            latest = await reader.recent_events("u1", 2)
            return snap, cached, unknown, with_seen, latest
        finally:
            await reader.close()

    snap, cached, unknown, with_seen, latest = asyncio.run(run())
    assert snap.marker == 7 and snap.cached is None
    assert [ev.item_id for ev in snap.recent] == ["i4", "i3", "i2"]
    assert snap.recent[0].ts_ms == 1_004 and snap.recent[0].event_type == "click"
    assert snap.purchased == frozenset({"i9"})
    assert cached.cached == b'{"items":[]}'
    assert unknown.marker == 0 and unknown.recent == () and unknown.purchased == frozenset()
    assert snap.seen is None  # only read when asked for
    assert with_seen.seen == frozenset({"i0", "i4", "i9"}) and with_seen.recent == snap.recent
    assert [(ev.item_id, ev.ts_ms) for ev in latest] == [("i4", 1_004), ("i3", 1_003)]


def test_reads_fail_fast_with_realtime_unavailable_when_redis_is_gone() -> None:
    from pydantic import SecretStr

    from tooling.devstack.processes import free_port

    dead = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"), timeout_s=0.5)

    async def run() -> list[Any]:
        reader = RedisRealtimeReader(dead)
        try:
            return list(
                await asyncio.gather(
                    *[reader.user_snapshot(f"u{i}", None, 5) for i in range(3)], return_exceptions=True
                )
            )
        finally:
            await reader.close()

    errors = asyncio.run(run())
    assert all(isinstance(e, RealtimeUnavailable) for e in errors), errors


@pytest.mark.parametrize("n", [600])
def test_more_than_a_batch_is_split_but_nothing_is_lost(settings: Settings, n: int) -> None:
    async def run() -> tuple[list[Any], CommandBatcher]:
        client = _client(settings)
        batcher = CommandBatcher(client, timeout_s=2.0, max_batch=256)
        try:
            return list(await asyncio.gather(*[batcher.submit("ECHO", str(i)) for i in range(n)])), batcher
        finally:
            await batcher.aclose()
            await client.aclose()

    replies, batcher = asyncio.run(run())
    assert replies == [str(i).encode() for i in range(n)]
    assert batcher.batches == 3
