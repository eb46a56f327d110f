"""Redis-held realtime state (key layout in ``core.keys``): port, Redis adapter, in-memory twin.

Writers hand over a *plan*: a list of ``Op`` (one Redis command each) built by pure code, plus the
Kafka offsets the plan covers and the guard values (generation marker, applied offsets) it was made
against. ``apply`` checks the guard and runs both in one server-side script
(``storage.realtime_guard``), so a crash leaves either all of a batch's effects and its
``applied:<topic>:<partition>`` offsets, or none of them, and a plan made against a guard that has
moved since (a zombie member, a rebuild) writes nothing. On Redis Cluster (``redis.cluster: true``)
that holds for the shared slot's effects; each user's idempotent effects run just before, per slot
(``storage.realtime_guard`` says why that is safe).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from redis.crc import key_slot
from redis.exceptions import NoScriptError
from redis.lock import Lock

from core.keys import Keys
from core.realtime_ops import ApplyStatus, Guard, Op, TopicPartition, check_guard
from core.settings import RedisSettings
from storage.realtime_guard import (
    APPLY_SCRIPT,
    FINISH_REBUILD_SCRIPT,
    OPS_SCRIPT,
    MemoryLease,
    RebuildLease,
    RedisLease,
    apply_script_call,
    ops_script_call,
    split_by_slot,
)
from storage.realtime_snapshot import Snapshot, SnapshotBuilder, txt
from storage.redis_clients import SyncRedis, is_cluster, make_redis

log = logging.getLogger(__name__)


class RealtimeState(Protocol):
    keys: Keys

    def apply(
        self,
        ops: list[Op],
        applied: Mapping[TopicPartition, int],
        *,
        expected: Mapping[TopicPartition, int] | None = None,
        generation: str | None = None,
    ) -> ApplyStatus:
        """Run ``ops`` and set the applied offsets, atomically, if the stored applied offsets equal
        ``expected`` and the generation marker equals ``generation`` (each check only when given);
        otherwise write nothing and say which check failed."""

    def applied_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Highest applied offset per partition; -1 where nothing was applied yet."""

    def guard(self, partitions: Iterable[TopicPartition]) -> Guard:
        """The generation marker (None when absent) and the applied offsets, to plan against."""

    def acquire_rebuild_lock(self, ttl_s: float) -> RebuildLease | None:
        """The rebuild lock, or None when another process holds it."""

    def drop_generation(self) -> None:
        """Remove the generation marker: every guarded ``apply`` is refused until a rebuild ends."""

    def finish_rebuild(self, generation: str, applied: Mapping[TopicPartition, int]) -> None:
        """Raise applied offsets to at least ``applied`` and set the generation marker, atomically."""

    def item_categories(self, item_ids: Iterable[str]) -> dict[str, str | None]: ...

    def erase_user(self, user_id: str) -> int:
        """Delete the user's keys and cached results; returns the number of keys deleted."""

    def clear_derived(self) -> int:
        """Delete every key under the prefix except markers, applied offsets and ``meta:`` keys."""

    def snapshot(self, now_s: float) -> Snapshot:
        """Comparable view of the state (markers and applied offsets excluded)."""

    def ping(self) -> None: ...


# ---------------------------------------------------------------- Redis adapter


class RedisRealtimeState:
    def __init__(self, client: SyncRedis, prefix: str = "sr:") -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.cluster = is_cluster(client)
        self._shared_slot = key_slot(self.keys.generation().encode())
        # register_script sends EVALSHA and falls back to loading the script on NOSCRIPT.
        self._apply_script = client.register_script(APPLY_SCRIPT)
        self._finish_script = client.register_script(FINISH_REBUILD_SCRIPT)
        self._ops_script = client.register_script(OPS_SCRIPT)

    @classmethod
    def from_settings(cls, settings: RedisSettings, prefix: str | None = None) -> RedisRealtimeState:
        return cls(make_redis(settings), settings.key_prefix if prefix is None else prefix)

    def apply(
        self,
        ops: list[Op],
        applied: Mapping[TopicPartition, int],
        *,
        expected: Mapping[TopicPartition, int] | None = None,
        generation: str | None = None,
    ) -> ApplyStatus:
        if self.cluster:
            ops, per_slot = split_by_slot(ops, self._shared_slot)
            if per_slot:
                self._run_unguarded(per_slot)
        keys, argv = apply_script_call(
            self.keys.generation(), self.keys.applied, ops, applied, expected, generation
        )
        return ApplyStatus(txt(self._apply_script(keys=keys, args=argv)))

    def _run_unguarded(self, groups: list[list[Op]]) -> None:
        """Redis Cluster: one ``OPS_SCRIPT`` call per slot, all in one pipeline (one round trip per
        primary). Raises the first error; scripts a primary does not know yet are loaded and sent
        again (a cluster pipeline has no script cache of its own)."""
        calls = [ops_script_call(group) for group in groups]
        for _attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for keys, argv in calls:
                pipe.execute_command("EVALSHA", self._ops_script.sha, len(keys), *keys, *argv)
            replies = pipe.execute(raise_on_error=False)
            errors = [r for r in replies if isinstance(r, Exception) and not isinstance(r, NoScriptError)]
            if errors:
                raise errors[0]
            calls = [c for c, r in zip(calls, replies, strict=True) if isinstance(r, NoScriptError)]
            if not calls:
                return
            self.client.script_load(OPS_SCRIPT)
        raise NoScriptError("Redis kept answering NOSCRIPT for the per-user effects script")

    def guard(self, partitions: Iterable[TopicPartition]) -> Guard:
        # One MGET: the marker and the offsets share the shared slot, so this works on a cluster too.
        parts = list(dict.fromkeys(partitions))
        values = self.client.mget([self.keys.generation(), *(self.keys.applied(t, p) for t, p in parts)])
        applied = {tp: int(v) if v is not None else -1 for tp, v in zip(parts, values[1:], strict=True)}
        return Guard(None if values[0] is None else txt(values[0]), applied)

    def acquire_rebuild_lock(self, ttl_s: float) -> RebuildLease | None:
        lock = Lock(self.client, self.keys.rebuild_lock(), timeout=ttl_s, blocking=False, thread_local=False)
        return RedisLease(lock) if lock.acquire() else None

    def drop_generation(self) -> None:
        self.client.delete(self.keys.generation())

    def finish_rebuild(self, generation: str, applied: Mapping[TopicPartition, int]) -> None:
        keys = [self.keys.generation(), *(self.keys.applied(t, p) for t, p in applied)]
        self._finish_script(keys=keys, args=[generation, *(int(o) for o in applied.values())])

    def applied_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        parts = list(dict.fromkeys(partitions))
        if not parts:
            return {}
        values = self.client.mget([self.keys.applied(t, p) for t, p in parts])
        return {tp: int(v) if v is not None else -1 for tp, v in zip(parts, values, strict=True)}

    def item_categories(self, item_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(item_ids))
        pipe = self.client.pipeline(transaction=False)
        for iid in ids:
            pipe.hget(self.keys.item(iid), "category")
        return {iid: (txt(c) if c is not None else None) for iid, c in zip(ids, pipe.execute(), strict=True)}

    def _scan(self, pattern: str) -> Iterator[str]:
        for key in self.client.scan_iter(match=pattern, count=1000):
            yield txt(key)

    def _delete(self, keys: Iterable[str]) -> int:
        deleted = 0
        chunk: list[str] = []
        for key in keys:
            chunk.append(key)
            if len(chunk) >= 1000:
                deleted += int(self.client.unlink(*chunk))
                chunk = []
        if chunk:
            deleted += int(self.client.unlink(*chunk))
        return deleted

    def erase_user(self, user_id: str) -> int:
        # Every key of a user is derived from the layout (core.keys): no keyspace scan.
        return int(self.client.unlink(*self.keys.user_keys(user_id)))

    def clear_derived(self) -> int:
        keys = [k for k in self._scan(_glob_escape(self.keys.prefix) + "*") if _is_derived(self.keys, k)]
        return self._delete(keys)

    def snapshot(self, now_s: float) -> Snapshot:
        builder = SnapshotBuilder(self.keys.prefix, now_s)
        todo = [
            (k, kind) for k in self._scan(_glob_escape(self.keys.prefix) + "*") if (kind := builder.kind(k))
        ]
        for start in range(0, len(todo), 500):
            chunk = todo[start : start + 500]
            pipe = self.client.pipeline(transaction=False)
            for key, kind in chunk:
                if kind == "zset":
                    pipe.zrange(key, 0, -1, withscores=True)
                elif kind == "set":
                    pipe.smembers(key)
                else:
                    pipe.hgetall(key)
            for (key, kind), value in zip(chunk, pipe.execute(), strict=True):
                if kind == "zset":
                    value = {txt(m): float(s) for m, s in value}
                elif kind == "set":
                    value = {txt(m) for m in value}
                else:
                    value = {txt(f): txt(v) for f, v in value.items()}
                builder.add(key, value)
        return builder.snap

    def ping(self) -> None:
        self.client.ping()


def _is_derived(keys: Keys, key: str) -> bool:
    """Everything under the prefix but what a rebuild keeps (``Keys.survives_rebuild``)."""
    return key.startswith(keys.prefix) and not keys.survives_rebuild(key)


def _glob_escape(pattern: str) -> str:
    """Escape glob characters in ids, keeping a trailing ``*`` wildcard."""
    body, star = (pattern[:-1], "*") if pattern.endswith("*") else (pattern, "")
    for ch in "\\[]?*":
        body = body.replace(ch, "\\" + ch)
    return body + star


# ---------------------------------------------------------------- in-memory twin


class InMemoryRealtimeState:
    """Same behaviour as ``RedisRealtimeState`` for unit tests; set ``fail_with`` to simulate an outage."""

    def __init__(self, prefix: str = "sr:") -> None:
        self.keys = Keys(prefix)
        self.strings: dict[str, str] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.sets: dict[str, set[str]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.expire_at: dict[str, int] = {}
        self.fail_with: Exception | None = None
        self.transactions = 0
        self.lock_owner: object | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def apply(
        self,
        ops: list[Op],
        applied: Mapping[TopicPartition, int],
        *,
        expected: Mapping[TopicPartition, int] | None = None,
        generation: str | None = None,
    ) -> ApplyStatus:
        self._check()
        stored = self.applied_offsets(expected or {})
        status = check_guard(self.strings.get(self.keys.generation()), stored, expected, generation)
        if status is not ApplyStatus.OK:
            return status
        for op in ops:
            self._run(op)
        for (topic, partition), offset in applied.items():
            self.strings[self.keys.applied(topic, partition)] = str(offset)
        self.transactions += 1
        return ApplyStatus.OK

    def _run(self, op: Op) -> None:
        a, key = op.args, op.key
        if op.name == "zadd":
            self.zsets.setdefault(key, {})[a[0]] = float(a[1])
        elif op.name == "zincrby":
            z = self.zsets.setdefault(key, {})
            z[a[0]] = z.get(a[0], 0.0) + float(a[1])
        elif op.name == "zremrangebyrank":
            z = self.zsets.get(key, {})
            ranked = sorted(z.items(), key=lambda p: (p[1], p[0]))
            n = len(ranked)
            start, stop = (a[0] + n if a[0] < 0 else a[0]), (a[1] + n if a[1] < 0 else a[1])
            if stop >= 0:  # Redis semantics: an out-of-range stop removes nothing
                for member, _ in ranked[max(0, start) : stop + 1]:
                    del z[member]
        elif op.name == "sadd":
            self.sets.setdefault(key, set()).update(a)
        elif op.name == "srem":
            s = self.sets.get(key, set())
            s.difference_update(a)
        elif op.name == "incr":
            self.strings[key] = str(int(self.strings.get(key, "0")) + 1)
        elif op.name == "expireat":
            self.expire_at[key] = int(a[0])
        elif op.name == "hset":
            self.hashes.setdefault(key, {}).update({f: str(v) for f, v in a})
        else:  # pragma: no cover
            raise ValueError(f"unknown op {op.name}")
        # Redis deletes empty containers; the twin does the same so key counts match.
        for store in (self.zsets, self.sets):
            if key in store and not store[key]:  # type: ignore[attr-defined]
                del store[key]  # type: ignore[attr-defined]

    def applied_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check()
        return {(t, p): int(self.strings.get(self.keys.applied(t, p), "-1")) for t, p in partitions}

    def guard(self, partitions: Iterable[TopicPartition]) -> Guard:
        self._check()
        return Guard(self.strings.get(self.keys.generation()), self.applied_offsets(partitions))

    def acquire_rebuild_lock(self, ttl_s: float) -> RebuildLease | None:
        self._check()
        if self.lock_owner is not None:
            return None
        lease = MemoryLease(self)
        self.lock_owner = lease
        return lease

    def drop_generation(self) -> None:
        self._check()
        self.strings.pop(self.keys.generation(), None)

    def finish_rebuild(self, generation: str, applied: Mapping[TopicPartition, int]) -> None:
        self._check()
        for (topic, partition), offset in applied.items():
            key = self.keys.applied(topic, partition)
            if int(self.strings.get(key, "-1")) < offset:
                self.strings[key] = str(offset)
        self.strings[self.keys.generation()] = generation

    def flush_all(self) -> None:
        """What a restarted Redis without persistence looks like: nothing at all."""
        for store in (self.strings, self.zsets, self.sets, self.hashes, self.expire_at):
            store.clear()  # type: ignore[attr-defined]
        self.lock_owner = None

    def item_categories(self, item_ids: Iterable[str]) -> dict[str, str | None]:
        self._check()
        return {iid: self.hashes.get(self.keys.item(iid), {}).get("category") for iid in item_ids}

    def _all_keys(self) -> list[str]:
        return [*self.strings, *self.zsets, *self.sets, *self.hashes]

    def _delete(self, keys: Iterable[str]) -> int:
        deleted = 0
        for key in keys:
            hit = False
            for store in (self.strings, self.zsets, self.sets, self.hashes):
                if key in store:
                    del store[key]  # type: ignore[attr-defined]
                    hit = True
            self.expire_at.pop(key, None)
            deleted += hit
        return deleted

    def erase_user(self, user_id: str) -> int:
        self._check()
        return self._delete(self.keys.user_keys(user_id))

    def clear_derived(self) -> int:
        self._check()
        return self._delete([k for k in self._all_keys() if _is_derived(self.keys, k)])

    def snapshot(self, now_s: float) -> Snapshot:
        builder = SnapshotBuilder(self.keys.prefix, now_s)
        for key in self._all_keys():
            kind = builder.kind(key)
            if kind == "zset" and key in self.zsets:
                builder.add(key, dict(self.zsets[key]))
            elif kind == "set" and key in self.sets:
                builder.add(key, set(self.sets[key]))
            elif kind == "hash" and key in self.hashes:
                builder.add(key, dict(self.hashes[key]))
        return builder.snap

    def ping(self) -> None:
        self._check()

    def marker(self, user_id: str) -> int:
        return int(self.strings.get(self.keys.marker(user_id), "0"))
