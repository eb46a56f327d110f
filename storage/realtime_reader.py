"""Redis read port for serving: user state, popularity, catalog, and the per-user results cache.

Reads the layout in ``core.keys`` (written by the consumer). Every call is bounded by
``redis.timeout_s`` and guarded by a circuit breaker, so a dead Redis costs one timeout and then
fails fast (``RealtimeUnavailable``) until a probe succeeds again; serving turns that into
``degraded: true`` responses instead of errors.

The per-request reads (one Lua script returning marker, cached result, recent events and purchases)
and the cache fills go through ``CommandBatcher``: the requests a process is serving at the same
moment share one pipeline round trip.

Cached results are stored as ``b"{marker}:" + payload``; a read returns the payload only when the
stored marker equals the user's current marker, which the consumer bumps on every change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from core.errors import DependencyUnavailable
from core.keys import ALL_TIME, WINDOWS, Keys
from core.settings import RedisSettings
from storage.redis_batching import CommandBatcher, LuaScript

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
if ARGV[2] == '1' then cached = redis.call('GET', KEYS[2]) or '' end
local recent = redis.call('ZREVRANGE', KEYS[3], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local purchased = redis.call('SMEMBERS', KEYS[4])
return {marker, cached, recent, purchased}
"""
)


class RealtimeUnavailable(DependencyUnavailable):
    """Redis cannot be reached (or the circuit breaker is open)."""


@dataclass(frozen=True)
class RecentEvent:
    event_id: str
    item_id: str
    event_type: str
    ts_ms: int


@dataclass(frozen=True)
class UserSnapshot:
    marker: int
    # The cached payload for the requested params, only when it was computed at the current marker.
    cached: bytes | None
    recent: tuple[RecentEvent, ...]  # newest first
    purchased: frozenset[str]


@dataclass(frozen=True)
class ErasedState:
    state_keys: int
    cached_results: int


class RealtimeReader(Protocol):
    async def user_snapshot(self, user_id: str, cache_params: str | None, recent_n: int) -> UserSnapshot: ...

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        """Queue a cache fill; it must not wait for Redis (requests await it on the hot path)."""
        ...

    async def popularity(
        self, window: str, k: int, category: str | None = None
    ) -> list[tuple[str, float]]: ...

    async def unavailable(self) -> frozenset[str]: ...

    async def category_items(self, category: str) -> frozenset[str]: ...

    async def item(self, item_id: str) -> dict[str, str] | None: ...

    async def erase_user(self, user_id: str) -> ErasedState: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def parse_recent(member: bytes | str, score: float) -> RecentEvent | None:
    try:
        data = orjson.loads(member)
        return RecentEvent(str(data["e"]), str(data["i"]), str(data["t"]), int(score))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def split_cached(raw: bytes | None, marker: int) -> bytes | None:
    if not raw:
        return None
    head, sep, payload = raw.partition(b":")
    if not sep or not head.isdigit() or int(head) != marker:
        return None
    return payload


def glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a user id like ``a*`` matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; let one probe through every ``reset_s``."""

    def __init__(self, threshold: int = 2, reset_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self.threshold and (self._probing or self._clock() < self._open_until)

    def allow(self) -> bool:
        if self._failures < self.threshold:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self.threshold:
            self._open_until = self._clock() + self.reset_s


class RedisRealtimeReader:
    def __init__(
        self, settings: RedisSettings, *, client: Any | None = None, breaker: CircuitBreaker | None = None
    ):
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.keys = Keys(settings.key_prefix)
        self.breaker = breaker or CircuitBreaker()
        self._errors: tuple[type[BaseException], ...] = (
            aioredis.ConnectionError,
            aioredis.TimeoutError,
            OSError,
            asyncio.TimeoutError,
        )
        self._timeout = settings.timeout_s
        # No client-side retries: the breaker decides when to try again.
        self.client = client or aioredis.Redis.from_url(
            settings.url.get_secret_value(),
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.batcher = CommandBatcher(self.client, timeout_s=settings.timeout_s)

    async def _guard(self, make: Callable[[], Awaitable[T]], *, bounded: bool = False) -> T:
        """``bounded``: the awaitable already ends within the timeout (a batched command: the
        batcher times out the whole round trip), so no per-call timer is armed."""
        if not self.breaker.allow():
            raise RealtimeUnavailable("Redis is unavailable (circuit open after recent failures)")
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
            self.breaker._probing = False
            raise
        self.breaker.success()
        return result

    async def user_snapshot(self, user_id: str, cache_params: str | None, recent_n: int) -> UserSnapshot:
        k = self.keys
        keys = [
            k.marker(user_id),
            k.recs_cache(user_id, cache_params) if cache_params is not None else k.marker(user_id),
            k.recent(user_id),
            k.purchased(user_id),
        ]
        args = (max(recent_n, 1), "1" if cache_params is not None else "0")
        reply = await self._guard(
            lambda: self.batcher.submit_script(USER_SNAPSHOT_LUA, keys, args), bounded=True
        )
        marker_raw, cached_raw, recent_raw, purchased_raw = reply
        marker = int(marker_raw) if marker_raw else 0
        cached = split_cached(cached_raw, marker) if cache_params is not None else None
        recent = tuple(
            ev
            for m, score in zip(recent_raw[::2], recent_raw[1::2], strict=True)
            if (ev := parse_recent(m, float(score))) is not None
        )
        return UserSnapshot(marker, cached, recent, frozenset(x.decode() for x in purchased_raw))

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        """Queued with the next batch of reads; a lost cache fill only costs a recomputation."""
        if ttl_s <= 0 or self.breaker.is_open:
            return
        key = self.keys.recs_cache(user_id, cache_params)
        self.batcher.submit_nowait("SET", key, f"{marker}:".encode() + payload, "EX", ttl_s)

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

    async def unavailable(self) -> frozenset[str]:
        members = await self._guard(lambda: self.client.smembers(self.keys.unavailable()))
        return frozenset(m.decode() for m in members)

    async def category_items(self, category: str) -> frozenset[str]:
        members = await self._guard(lambda: self.client.smembers(self.keys.category(category)))
        return frozenset(m.decode() for m in members)

    async def item(self, item_id: str) -> dict[str, str] | None:
        raw = await self._guard(lambda: self.client.hgetall(self.keys.item(item_id)))
        return {key.decode(): val.decode() for key, val in raw.items()} or None

    async def _delete_matching(self, pattern: str) -> int:
        deleted = 0
        batch: list[Any] = []
        async for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self.client.delete(*batch))
                batch = []
        if batch:
            deleted += int(await self.client.delete(*batch))
        return deleted

    async def erase_user(self, user_id: str) -> ErasedState:
        uid = glob_escape(user_id)
        k = self.keys
        state = await self._guard(lambda: self._delete_matching(f"{glob_escape(k.prefix)}user:{uid}:*"))
        cached = await self._guard(
            lambda: self._delete_matching(f"{glob_escape(k.prefix)}cache:recs:{uid}:*")
        )
        return ErasedState(state_keys=state, cached_results=cached)

    async def ping(self) -> None:
        await self._guard(lambda: self.client.ping())

    async def close(self) -> None:
        await self.batcher.aclose()
        await self.client.aclose()


@dataclass
class InMemoryRealtimeReader:
    """Twin for unit tests. ``record`` applies an event the way the consumer would."""

    up: bool = True
    recent: dict[str, list[RecentEvent]] = field(default_factory=dict)
    purchased: dict[str, set[str]] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)
    pop: dict[str, dict[str, float]] = field(default_factory=lambda: {w: {} for w in (*WINDOWS, ALL_TIME)})
    items: dict[str, dict[str, str]] = field(default_factory=dict)
    categories: dict[str, set[str]] = field(default_factory=dict)
    unavailable_items: set[str] = field(default_factory=set)
    cache: dict[tuple[str, str], bytes] = field(default_factory=dict)
    calls: int = 0

    def _check(self) -> None:
        self.calls += 1
        if not self.up:
            raise RealtimeUnavailable("Redis is unavailable (in-memory twin switched off)")

    def record(
        self,
        user_id: str,
        item_id: str,
        event_type: str = "click",
        ts_ms: int | None = None,
        weight: float = 1.0,
    ) -> None:
        ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
        events = self.recent.setdefault(user_id, [])
        events.insert(0, RecentEvent(f"ev-{user_id}-{len(events)}-{ts}", item_id, event_type, ts))
        events.sort(key=lambda e: e.ts_ms, reverse=True)
        if event_type == "purchase":
            self.purchased.setdefault(user_id, set()).add(item_id)
        for scores in self.pop.values():
            scores[item_id] = scores.get(item_id, 0.0) + weight
        self.markers[user_id] = self.markers.get(user_id, 0) + 1

    def set_item(
        self, item_id: str, category: str | None = None, available: bool = True, title: str = ""
    ) -> None:
        entry = {"title": title, "available": "1" if available else "0"}
        if category is not None:
            entry["category"] = category
            self.categories.setdefault(category, set()).add(item_id)
        self.items[item_id] = entry
        if available:
            self.unavailable_items.discard(item_id)
        else:
            self.unavailable_items.add(item_id)

    async def user_snapshot(self, user_id: str, cache_params: str | None, recent_n: int) -> UserSnapshot:
        self._check()
        marker = self.markers.get(user_id, 0)
        raw = self.cache.get((user_id, cache_params)) if cache_params is not None else None
        return UserSnapshot(
            marker,
            split_cached(raw, marker),
            tuple(self.recent.get(user_id, [])[:recent_n]),
            frozenset(self.purchased.get(user_id, set())),
        )

    async def store_cached(
        self, user_id: str, cache_params: str, marker: int, payload: bytes, ttl_s: int
    ) -> None:
        self._check()
        if ttl_s > 0:
            self.cache[(user_id, cache_params)] = f"{marker}:".encode() + payload

    async def popularity(self, window: str, k: int, category: str | None = None) -> list[tuple[str, float]]:
        self._check()
        if window not in self.pop:
            raise ValueError(f"unknown popularity window {window!r}")
        members = self.categories.get(category, set()) if category is not None else None
        ranked = sorted(
            ((i, s) for i, s in self.pop[window].items() if members is None or i in members),
            key=lambda p: (-p[1], p[0]),
        )
        return ranked[:k]

    async def unavailable(self) -> frozenset[str]:
        self._check()
        return frozenset(self.unavailable_items)

    async def category_items(self, category: str) -> frozenset[str]:
        self._check()
        return frozenset(self.categories.get(category, set()))

    async def item(self, item_id: str) -> dict[str, str] | None:
        self._check()
        return self.items.get(item_id)

    async def erase_user(self, user_id: str) -> ErasedState:
        self._check()
        state = sum(
            1 for store in (self.recent, self.purchased, self.markers) if store.pop(user_id, None) is not None
        )
        cached_keys = [key for key in self.cache if key[0] == user_id]
        for key in cached_keys:
            del self.cache[key]
        return ErasedState(state_keys=state, cached_results=len(cached_keys))

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None
