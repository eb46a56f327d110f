"""Redis read port for serving: user state, popularity, catalog, and the per-user results cache.

Reads the layout in ``core.keys`` (written by the consumer). Every call is bounded by
``redis.timeout_s`` and guarded by a circuit breaker, so a dead Redis costs one timeout and then
fails fast (``RealtimeUnavailable``) until a probe succeeds again; serving turns that into
``degraded: true`` responses instead of errors.

The per-request reads (one Lua script returning marker, cached result, recent events, purchases and,
when asked, the seen set) and the cache fills go through ``CommandBatcher``: the requests a process
is serving at the same moment share one pipeline round trip.

Cached results live in one hash per user (field = request params) in the format of
``core.cache_payload``; a read returns the payload only when the stored marker equals the user's current
marker, which the consumer bumps on every change, and the entry has not expired. (Redis 7.0 has no
per-field TTL; the key's own TTL bounds the hash, the stamp bounds each field.) Recent events are
decoded with ``core.recent``.

Replica sync: ``sync`` reads the catalog version counter and the erasures stream in one round trip;
serving polls it so an availability change or an erasure reaches every replica within a poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.cache_payload import cache_entry, split_cached
from core.keys import ALL_TIME, WINDOWS, Keys
from core.recent import RecentEvent, parse_recent
from core.settings import RedisSettings
from storage.circuit_breaker import CircuitBreaker
from storage.errors import RealtimeUnavailable
from storage.redis_batching import CommandBatcher, LuaScript
from storage.redis_clients import is_cluster, make_async_redis

T = TypeVar("T")
# Merged window popularity is recomputed at most this often per window (the tmp key's name changes).
MERGE_SLOT_S = 5
TMP_TTL_S = 15
# One reply with everything a recommendation needs from Redis. A missing key must not become a nil in
# the middle of the returned table (Lua would cut the table there), hence the ``or ''``.
USER_SNAPSHOT_LUA = LuaScript(
    """
local marker = redis.call('GET', KEYS[1]) or ''
local cached = ''
if ARGV[2] == '1' then cached = redis.call('HGET', KEYS[2], ARGV[3]) or '' end
local recent = redis.call('ZREVRANGE', KEYS[3], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local purchased = redis.call('SMEMBERS', KEYS[4])
local seen = {}
if ARGV[4] == '1' then seen = redis.call('SMEMBERS', KEYS[5]) end
return {marker, cached, recent, purchased, seen}
"""
)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class UserSnapshot:
    marker: int
    # The cached payload for the requested params, only when it was computed at the current marker.
    cached: bytes | None
    recent: tuple[RecentEvent, ...]  # newest first
    purchased: frozenset[str]
    # Every item the user interacted with; read only when asked for (it grows with the history).
    seen: frozenset[str] | None = None


@dataclass(frozen=True)
class ErasedState:
    state_keys: int
    cached_results: int


@dataclass(frozen=True)
class ReplicaSync:
    """What every replica polls: the catalog version and the erasures after ``since``."""

    catalog_version: int
    erasures: tuple[str, ...]  # user ids, oldest first
    last_erasure_id: str  # pass back as ``since`` next time


ERASURES_MAXLEN = 10_000
SYNC_BATCH = 1000


class RealtimeReader(Protocol):
    async def user_snapshot(
        self, user_id: str, cache_params: str | None, recent_n: int, *, with_seen: bool = False
    ) -> UserSnapshot: ...

    async def recent_events(self, user_id: str, n: int) -> tuple[RecentEvent, ...]:
        """The user's newest ``n`` interactions, newest first."""
        ...

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        """Queue a cache fill; it must not wait for Redis (requests await it on the hot path)."""
        ...

    async def popularity(
        self, window: str, k: int, category: str | None = None
    ) -> list[tuple[str, float]]: ...

    async def window_scores(self, window: str, item_ids: Sequence[str]) -> dict[str, float]:
        """The merged (decayed) ``window`` popularity of each of ``item_ids``; absent ones are left out."""
        ...

    async def newest_items(self, k: int, since_ms: int) -> list[tuple[str, int]]:
        """Up to ``k`` catalog items first seen at or after ``since_ms``: (item, added ms), newest first."""
        ...

    async def unavailable(self) -> frozenset[str]: ...

    async def category_items(self, category: str) -> frozenset[str]: ...

    async def item(self, item_id: str) -> dict[str, str] | None: ...

    async def erase_user(self, user_id: str) -> ErasedState:
        """Delete the user's keys and cached results, and announce the erasure to every replica."""
        ...

    async def sync(self, since: str) -> ReplicaSync: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def raise_lost_cancel() -> None:
    """Deliver a cancellation that the Redis client lost: the call returned although the task was
    cancelled while it ran.

    Python 3.11's ``asyncio.wait_for``, which redis-py's socket writes (``send_packed_command``) and
    connects use, returns the inner result when the cancel arrives just as the inner call finishes,
    and the cancel is never raised (CPython gh-86296, fixed in 3.12 by rebuilding ``wait_for`` on
    ``asyncio.timeout``). A background loop of serving (replica sync, snapshot refresh) that loses
    its cancel keeps polling, and the app's shutdown waits for it forever: seen in CI as a test whose
    TestClient never finished its lifespan, and as a ``serve`` worker that did not exit after SIGTERM.
    The task's ``cancelling()`` count still records the request, so it is raised here.
    """
    raise asyncio.CancelledError("cancelled while a Redis call ran (the client had lost the cancel)")


def parse_recent_reply(flat: list[Any]) -> tuple[RecentEvent, ...]:
    """A ``ZREVRANGE ... WITHSCORES`` reply from Lua (member, score, member, score...)."""
    return tuple(
        ev
        for m, score in zip(flat[::2], flat[1::2], strict=True)
        if (ev := parse_recent(m, float(score))) is not None
    )


class RedisRealtimeReader:
    def __init__(
        self, settings: RedisSettings, *, client: Any | None = None, breaker: CircuitBreaker | None = None
    ):
        import redis.asyncio as aioredis
        from redis.exceptions import ClusterError

        self.keys = Keys(settings.key_prefix)
        self.breaker = breaker or CircuitBreaker()
        self._errors: tuple[type[BaseException], ...] = (
            aioredis.ConnectionError,
            aioredis.TimeoutError,
            OSError,
            asyncio.TimeoutError,
            # Redis Cluster: no primary answered for a slot within the client's redirections.
            ClusterError,
        )
        self._timeout = settings.timeout_s
        self.client = client or make_async_redis(settings)
        self.cluster = is_cluster(self.client)
        self.batcher = CommandBatcher(self.client, timeout_s=settings.timeout_s)

    async def _guard(self, make: Callable[[], Awaitable[T]], *, bounded: bool = False) -> T:
        """``bounded``: the awaitable already ends within the timeout (a batched command: the
        batcher times out the whole round trip), so no per-call timer is armed."""
        if not self.breaker.allow():
            raise RealtimeUnavailable("Redis is unavailable (circuit open after recent failures)")
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            if bounded:
                result = await make()
            else:
                async with asyncio.timeout(self._timeout * 1.5):
                    result = await make()
        except self._errors as exc:
            self.breaker.failure()
            raise RealtimeUnavailable(f"Redis is unavailable: {exc or type(exc).__name__}") from exc
        except BaseException:
            # Not a connectivity problem (e.g. cancellation); do not leave a probe slot hanging.
            self.breaker.abandon()
            raise
        self.breaker.success()
        if task is not None and task.cancelling() > cancels:
            raise_lost_cancel()
        return result

    async def user_snapshot(
        self, user_id: str, cache_params: str | None, recent_n: int, *, with_seen: bool = False
    ) -> UserSnapshot:
        k = self.keys
        keys = [
            k.marker(user_id),
            k.recs_cache(user_id),
            k.recent(user_id),
            k.purchased(user_id),
            k.seen(user_id),
        ]
        args = (
            max(recent_n, 1),
            "1" if cache_params is not None else "0",
            cache_params or "",
            "1" if with_seen else "0",
        )
        reply = await self._guard(
            lambda: self.batcher.submit_script(USER_SNAPSHOT_LUA, keys, args), bounded=True
        )
        marker_raw, cached_raw, recent_raw, purchased_raw, seen_raw = reply
        marker = int(marker_raw) if marker_raw else 0
        cached = split_cached(cached_raw, marker, now_ms()) if cache_params is not None else None
        return UserSnapshot(
            marker,
            cached,
            parse_recent_reply(recent_raw),
            frozenset(x.decode() for x in purchased_raw),
            frozenset(x.decode() for x in seen_raw) if with_seen else None,
        )

    async def recent_events(self, user_id: str, n: int) -> tuple[RecentEvent, ...]:
        key = self.keys.recent(user_id)
        raw = await self._guard(lambda: self.client.zrevrange(key, 0, max(n, 1) - 1, withscores=True))
        return tuple(ev for m, score in raw if (ev := parse_recent(m, float(score))) is not None)

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        """Queued with the next batch of reads; a lost cache fill only costs a recomputation."""
        if ttl_s <= 0 or self.breaker.is_open:
            return
        key = self.keys.recs_cache(user_id)
        self.batcher.submit_nowait("HSET", key, cache_params, cache_entry(marker, ttl_s, payload, now_ms()))
        self.batcher.submit_nowait("EXPIRE", key, ttl_s)

    def _source_key(self, window: str, now_s: float) -> tuple[str, list[Any]]:
        """The zset holding ``window`` popularity, plus pipeline commands that build it if needed."""
        if window == ALL_TIME:
            return self.keys.pop_all(), []
        spec = WINDOWS[window]
        buckets = spec.live_buckets(now_s)
        dest = self.keys.tmp(f"pop:{window}:{int(now_s // MERGE_SLOT_S)}")
        weights = {self.keys.pop_bucket(window, b): spec.bucket_weight(b, now_s) for b in buckets}
        return dest, [("zunionstore", dest, weights), ("expire", dest, TMP_TTL_S)]

    async def popularity(self, window: str, k: int, category: str | None = None) -> list[tuple[str, float]]:
        if window != ALL_TIME and window not in WINDOWS:
            raise ValueError(f"unknown popularity window {window!r}")
        now_s = time.time()
        source, build = self._source_key(window, now_s)
        if category is not None:
            dest = self.keys.tmp(f"popcat:{window}:{int(now_s // MERGE_SLOT_S)}:{category}")
            cat_key = self.keys.category(category)
            build = [*build, ("zinterstore", dest, {source: 1.0, cat_key: 0.0}), ("expire", dest, TMP_TTL_S)]
            source = dest

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for cmd, *args in build:
                getattr(pipe, cmd)(*args)
            pipe.zrevrange(source, 0, k - 1, withscores=True)
            return list(await pipe.execute())

        result = await self._guard(run)
        return [(m.decode(), float(s)) for m, s in result[-1]]

    async def window_scores(self, window: str, item_ids: Sequence[str]) -> dict[str, float]:
        if window not in WINDOWS:
            raise ValueError(f"unknown popularity window {window!r}")
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return {}
        source, build = self._source_key(window, time.time())

        async def run() -> list[Any]:
            # The same merged key as ``popularity`` (one merge per MERGE_SLOT_S serves both).
            pipe = self.client.pipeline(transaction=False)
            for cmd, *args in build:
                getattr(pipe, cmd)(*args)
            pipe.zmscore(source, ids)
            return list(await pipe.execute())

        scores = (await self._guard(run))[-1]
        return {iid: float(s) for iid, s in zip(ids, scores, strict=True) if s is not None}

    async def newest_items(self, k: int, since_ms: int) -> list[tuple[str, int]]:
        key = self.keys.added()
        raw = await self._guard(
            lambda: self.client.zrevrangebyscore(key, "+inf", since_ms, start=0, num=k, withscores=True)
        )
        return [(m.decode(), int(s)) for m, s in raw]

    async def unavailable(self) -> frozenset[str]:
        members = await self._guard(lambda: self.client.smembers(self.keys.unavailable()))
        return frozenset(m.decode() for m in members)

    async def category_items(self, category: str) -> frozenset[str]:
        members = await self._guard(lambda: self.client.smembers(self.keys.category(category)))
        return frozenset(m.decode() for m in members)

    async def item(self, item_id: str) -> dict[str, str] | None:
        raw = await self._guard(lambda: self.client.hgetall(self.keys.item(item_id)))
        return {key.decode(): val.decode() for key, val in raw.items()} or None

    async def erase_user(self, user_id: str) -> ErasedState:
        k = self.keys

        async def run() -> list[Any]:
            if not self.cluster:
                # One transaction: the keys go and the announcement is made together, or neither.
                pipe = self.client.pipeline(transaction=True)
                pipe.unlink(*k.user_state_keys(user_id))
                pipe.unlink(k.recs_cache(user_id))
                pipe.xadd(k.erasures(), {"u": user_id}, maxlen=ERASURES_MAXLEN, approximate=True)
                return list(await pipe.execute())
            # A cluster keeps the user's keys (their slot) and the stream (the shared slot) apart, so
            # no transaction holds both: the keys go first (one slot, one round trip), then the
            # announcement. If that fails the call fails and is retried (erasure is idempotent), so an
            # erasure is never reported done before every replica can hear of it.
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command("UNLINK", *k.user_state_keys(user_id))
            pipe.execute_command("UNLINK", k.recs_cache(user_id))
            deleted = list(await pipe.execute())
            announced = await self.client.xadd(
                k.erasures(), {"u": user_id}, maxlen=ERASURES_MAXLEN, approximate=True
            )
            return [*deleted, announced]

        state, cached, _ = await self._guard(run)
        return ErasedState(state_keys=int(state), cached_results=int(cached))

    async def sync(self, since: str) -> ReplicaSync:
        k = self.keys

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.catalog_version())
            pipe.xrange(k.erasures(), min=f"({since}", max="+", count=SYNC_BATCH)
            return list(await pipe.execute())

        version_raw, entries = await self._guard(run)
        users = tuple(fields[b"u"].decode("utf-8", "replace") for _, fields in entries if b"u" in fields)
        last = entries[-1][0].decode() if entries else since
        return ReplicaSync(int(version_raw) if version_raw else 0, users, last)

    async def ping(self) -> None:
        await self._guard(lambda: self.client.ping())

    async def close(self) -> None:
        await self.batcher.aclose()
        await self.client.aclose()
