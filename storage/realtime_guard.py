"""The applied-offset guard: "were these records applied already?" and their effects in one step.

A consumer reads the guard (the generation marker and the ``applied`` offsets of its partitions),
decides which records are fresh, plans their effects, and hands the plan over together with the
guard values it planned against. ``APPLY_SCRIPT`` runs on the Redis server as one atomic step: it
compares the stored generation and every stored applied offset with the expected ones and, only if
all match, runs the ops and sets the new offsets. Anything else (a zombie member whose partitions
were revoked while it held a batch, a successor that applied the same batch first, a rebuild that
started or finished meanwhile) makes the script write nothing and answer which check failed, so
the caller reads the guard again and re-plans. Compare-and-set on the exact value, not ``>=``: an
offset that went *down* (Redis lost data) also invalidates the plan.

All keys travel in ``KEYS[]`` (never built inside the script), so Redis Cluster can check that a
call stays in one slot. On one Redis server a plan runs as one script, whatever its keys. On Redis
Cluster (``split_by_slot``) the ops on the shared slot (``core.keys``: popularity, catalog) run in
``APPLY_SCRIPT`` with the guard, which lives in that slot too; the ops of each other slot (one user's
keys) run first, each slot's in one ``OPS_SCRIPT`` call, unguarded. That is safe because those ops are
all idempotent (``UNGUARDED_OPS``: adding a recent member or a set member again, trimming again, one
more marker bump): if the guarded step then refuses (a zombie, a rebuild) or the process dies in
between, the records are applied again later and the per-user state comes out the same, while the
non-idempotent sums are still applied exactly once. The ops travel as one JSON argument (every
value a string, decoded by the server's built-in ``cjson``) rather than as thousands of separate
arguments: encoding those one by one was the largest single CPU cost of the consumer's Redis step
(BENCHMARKS.md). Command errors are avoided rather than rolled back (Redis
does not roll a script back): the checks run before the first write, ops are a closed set whose
arguments are formatted here, and a WRONGTYPE key would be a corrupted layout that rebuild fixes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.crc import key_slot
from redis.lock import Lock

from core.realtime_ops import Op, TopicPartition

# KEYS[1] generation marker; KEYS[2 .. 1+n] applied keys; KEYS[2+n ..] the ops' keys, each once.
# ARGV[1] expected generation ('' = do not check); ARGV[2] n; then n pairs (expected applied offset,
# '' = do not check; new applied offset, '' = leave); then ARGV[3+2n]: the ops as a JSON array, in
# order, each [command, index of its key in KEYS, args...] with every arg a string.
# The op loop shared by both scripts: the JSON ops in ARGV[pos], their keys in KEYS, in order.
_OPS_LOOP = """
local ops = cjson.decode(ARGV[pos])
for i = 1, #ops do
  local op = ops[i]
  redis.call(op[1], KEYS[op[2]], unpack(op, 3))
end
"""

APPLY_SCRIPT = """
local gen = ARGV[1]
if gen ~= '' and redis.call('GET', KEYS[1]) ~= gen then
  return 'generation'
end
local n = tonumber(ARGV[2])
for i = 1, n do
  local want = ARGV[1 + 2 * i]
  if want ~= '' then
    local cur = redis.call('GET', KEYS[1 + i])
    if cur == false then cur = '-1' end
    if tonumber(cur) ~= tonumber(want) then
      return 'offsets'
    end
  end
end
local pos = 3 + 2 * n
-- ops --
for i = 1, n do
  local new = ARGV[2 + 2 * i]
  if new ~= '' then
    redis.call('SET', KEYS[1 + i], new)
  end
end
return 'ok'
""".replace("-- ops --", _OPS_LOOP)

# Ops only, no guard: KEYS the ops' keys, each once; ARGV[1] the ops as in APPLY_SCRIPT.
OPS_SCRIPT = """
local pos = 1
-- ops --
return 'ok'
""".replace("-- ops --", _OPS_LOOP)

# Ops that may run outside the guard on Redis Cluster: running one twice leaves the same state
# (ZADD/SADD of the same member, a trim to the same top N) or a harmless one (a marker bumped once
# more only invalidates cached results). A plan with any other op outside the shared slot is refused.
UNGUARDED_OPS = frozenset({"zadd", "sadd", "zremrangebyrank", "incr"})

# KEYS[1] generation marker, KEYS[2 ..] applied keys; ARGV[1] new generation, ARGV[2 ..] offsets.
# An applied offset only moves up: a record below it has its effects in the rebuilt state.
FINISH_REBUILD_SCRIPT = """
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur == false or tonumber(cur) < tonumber(ARGV[i]) then
    redis.call('SET', KEYS[i], ARGV[i])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def _text(value: Any) -> str:
    """An argument as redis-py would send it: repr for floats (exact round trip), str otherwise."""
    return repr(value) if isinstance(value, float) else str(value)


def redis_args(name: str, args: tuple[Any, ...]) -> list[str]:
    """An ``Op``'s arguments in the order the Redis command takes them (after the key), as text."""
    if name == "zadd" or name == "zincrby":
        return [_text(args[1]), _text(args[0])]  # score member / increment member
    if name == "zremrangebyrank":
        return [str(int(args[0])), str(int(args[1]))]
    if name in ("sadd", "srem"):
        return [_text(a) for a in args]
    if name == "incr":
        return []
    if name == "expireat":
        return [str(int(args[0]))]
    if name == "hset":
        return [_text(x) for pair in args for x in pair]
    raise ValueError(f"unknown op {name}")


def apply_script_call(
    generation_key: str,
    applied_key: Any,
    ops: Sequence[Op],
    applied: Mapping[TopicPartition, int],
    expected: Mapping[TopicPartition, int] | None,
    generation: str | None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for ``APPLY_SCRIPT``; ``applied_key(topic, partition)`` names an offset key."""
    parts = list(dict.fromkeys([*(expected or {}), *applied]))
    keys = [generation_key, *(applied_key(t, p) for t, p in parts)]
    argv: list[Any] = ["" if generation is None else generation, len(parts)]
    for tp in parts:
        argv.append("" if expected is None or tp not in expected else int(expected[tp]))
        argv.append(int(applied[tp]) if tp in applied else "")
    argv.append(_encode_ops(ops, keys))
    return keys, argv


def ops_script_call(ops: Sequence[Op]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for ``OPS_SCRIPT``."""
    keys: list[str] = []
    return keys, [_encode_ops(ops, keys)]


def _encode_ops(ops: Sequence[Op], keys: list[str]) -> bytes:
    """The ops as the scripts' JSON argument; each op's key is appended to ``keys`` once."""
    index = {key: n for n, key in enumerate(keys, start=1)}  # Lua tables count from 1
    encoded: list[list[Any]] = []
    append = encoded.append
    for name, key, args in ops:
        k = index.get(key)
        if k is None:
            keys.append(key)
            k = index[key] = len(keys)
        if name == "zadd" or name == "zincrby":
            # Most of a batch's ops (a recent-list member, a popularity increment): inlined, with the
            # same text redis_args gives (repr for a float score, str for the rest).
            member, score = args
            append(
                [
                    name,
                    k,
                    repr(score) if isinstance(score, float) else str(score),
                    member if type(member) is str else _text(member),
                ]
            )
        else:
            append([name, k, *redis_args(name, args)])
    # Every string here was stored in MongoDB first (BSON refuses what JSON could not carry).
    return orjson.dumps(encoded)


def split_by_slot(ops: Sequence[Op], shared_slot: int) -> tuple[list[Op], list[list[Op]]]:
    """Redis Cluster: the ops on ``shared_slot`` (to run guarded) and the others grouped by slot,
    each group in plan order. Raises ``ValueError`` for an op outside the shared slot that is not
    safe to run unguarded (see the module docstring)."""
    shared: list[Op] = []
    groups: dict[int, list[Op]] = {}
    for op in ops:
        slot = key_slot(op.key.encode())
        if slot == shared_slot:
            shared.append(op)
            continue
        if op.name not in UNGUARDED_OPS:
            raise ValueError(f"op {op.name} on {op.key!r} is outside the shared slot and not idempotent")
        groups.setdefault(slot, []).append(op)
    return shared, list(groups.values())


class RebuildLease(Protocol):
    def extend(self) -> None:
        """Restart the lease's TTL; raises if the lease was lost (expired and taken)."""

    def release(self) -> None: ...


@dataclass
class RedisLease:
    """redis-py's token lock: only the owner can extend or release it."""

    lock: Lock

    def extend(self) -> None:
        self.lock.reacquire()

    def release(self) -> None:
        self.lock.release()


class _LockHolder(Protocol):
    lock_owner: object | None


@dataclass(eq=False)
class MemoryLease:
    state: _LockHolder

    def extend(self) -> None:
        if self.state.lock_owner is not self:
            raise RuntimeError("rebuild lock lost")

    def release(self) -> None:
        if self.state.lock_owner is self:
            self.state.lock_owner = None
