"""The consumer's Redis effects as data: ``Op`` (one Redis command), the applied-offset ``Guard`` a plan
is made against, and the ``ApplyStatus`` an apply answers with.

Pure: the consumer's planners (``consumer.plans``) build lists of ``Op``; the Redis adapter and its
in-memory twin (``storage.realtime_state``) run them. ``check_guard`` is the guard's decision, the same
one the server-side script in ``storage.realtime_guard`` makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NamedTuple

OpName = Literal["zadd", "zincrby", "zremrangebyrank", "sadd", "srem", "incr", "expireat", "hset"]
TopicPartition = tuple[str, int]


class Op(NamedTuple):
    """One Redis command. ``args`` per name:

    zadd (member, score) · zincrby (member, amount) · zremrangebyrank (start, stop) ·
    sadd/srem (member, ...) · incr () · expireat (unix_s,) · hset ((field, value), ...)

    A named tuple, not a dataclass: the consumer builds several per event, and a tuple is built
    several times faster (measured in the consumer's CPU per event, BENCHMARKS.md).
    """

    name: OpName
    key: str
    args: tuple[Any, ...] = ()


class ApplyStatus(StrEnum):
    OK = "ok"
    STALE_GENERATION = "generation"  # the generation marker is missing or another one
    STALE_OFFSETS = "offsets"  # an applied offset is not the one the plan was made against


@dataclass(frozen=True)
class Guard:
    """What a plan is made against: the generation marker (None: Redis is empty) and offsets."""

    generation: str | None
    applied: dict[TopicPartition, int]


def check_guard(
    stored_generation: str | None,
    stored_applied: Mapping[TopicPartition, int],
    expected: Mapping[TopicPartition, int] | None,
    generation: str | None,
) -> ApplyStatus:
    """The apply script's checks, for the in-memory twin (``stored_applied`` holds -1 where unset)."""
    if generation is not None and stored_generation != generation:
        return ApplyStatus.STALE_GENERATION
    for tp, offset in (expected or {}).items():
        if stored_applied.get(tp, -1) != offset:
            return ApplyStatus.STALE_OFFSETS
    return ApplyStatus.OK
