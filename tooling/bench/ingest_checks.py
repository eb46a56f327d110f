"""Pure parts of `bench ingest`'s figures: the ceiling ratio with its sanity flag, and the
effects-applied-twice check (Redis's derived state against an independent recount from MongoDB).

The recount does not use the consumer's planners (``consumer.plans``) or ``rebuild-cache``: it
recomputes, from the stored documents alone, what each effect must be after every stored event was
applied exactly once, so a doubled (or lost) effect shows up as a difference:

- ``pop:all``: per item, the sum of the event weights (``core.event_weights``, the product's rule);
- popularity buckets live at ``now_s`` (an event's bucket that is still live now was live when it was
  consumed, so it was written): per bucket and item, the same sum;
- ``user:{uid}:recent``: the ``recent_max`` newest members by (score, member), as Redis trims them;
- ``user:{uid}:seen`` / ``user:{uid}:purchased``: item sets.

Sets and the recent list are idempotent (a second application changes nothing), so in practice only
the popularity counters can reveal a doubled effect; a lost effect shows in all of them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.event_weights import event_weight
from core.keys import WINDOWS, Keys
from core.recent import recent_member
from core.settings import EventWeights

if TYPE_CHECKING:
    from tooling.bench.common import BenchRun

# Popularity scores are float sums: equal within this (relative) tolerance.
SCORE_TOLERANCE = 1e-6


def ceiling_figures(full: float, parse: float | None, sink: float | None) -> dict[str, Any]:
    """``ratio`` = full path / sink ceiling; ``ceiling_suspect`` when a ceiling does not bound what
    it should (the full path beat a ceiling, or the sink ceiling beat the parse ceiling): it then
    measured something else than an upper bound, and the ratio says nothing."""
    suspects: list[str] = []
    if sink is not None and full > sink:
        suspects.append("full path faster than the sink ceiling")
    if parse is not None and full > parse:
        suspects.append("full path faster than the parse ceiling")
    if parse is not None and sink is not None and sink > parse:
        suspects.append("sink ceiling faster than the parse ceiling")
    return {
        "ratio": round(full / sink, 3) if sink else None,
        "ratio_to_parse": round(full / parse, 3) if parse else None,
        "ceiling_suspect": bool(suspects),
        "ceiling_suspect_reasons": suspects,
    }


@dataclass
class DerivedState:
    """The derived state the check compares: scores per key and item, and member sets per key."""

    # key kind ("pop:all" or "pop:{window}:{bucket}") -> item -> score
    scores: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    # ("recent" | "seen" | "purchased", user) -> members
    members: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def live_buckets(now_s: float) -> list[tuple[str, int]]:
    return [(name, start) for name, win in WINDOWS.items() for start in win.live_buckets(now_s)]


def recount(
    docs: Iterable[Mapping[str, Any]], *, weights: EventWeights, recent_max: int, now_s: float
) -> DerivedState:
    """What Redis must hold after each stored event's effects were applied exactly once."""
    live = set(live_buckets(now_s))
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    recent: dict[str, list[tuple[int, str]]] = defaultdict(list)
    members: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        user, item, etype = str(doc["user_id"]), str(doc["item_id"]), str(doc["event_type"])
        ts_ms = int(doc["ts_ms"]) if doc.get("ts_ms") is not None else int(doc["ts"].timestamp() * 1000)
        value = None if doc.get("value") is None else float(doc["value"])
        weight = event_weight(etype, value, weights)
        scores["pop:all"][item] += weight
        for name, win in WINDOWS.items():
            start = win.bucket_start(ts_ms / 1000.0)
            if (name, start) in live:
                scores[f"pop:{name}:{start}"][item] += weight
        event_id = str(doc.get("event_id", doc.get("_id")))
        recent[user].append((ts_ms, recent_member(event_id, item, etype, value)))
        members.setdefault(("seen", user), set()).add(item)
        if etype == "purchase":
            members.setdefault(("purchased", user), set()).add(item)
    for user, entries in recent.items():
        # Redis orders a zset by (score, member bytes) and the consumer keeps the top recent_max.
        entries.sort(key=lambda e: (e[0], e[1].encode()))
        members[("recent", user)] = {f"{m}@{ts}" for ts, m in entries[-recent_max:]}
    out = DerivedState(members=members)
    out.scores = {key: dict(per_item) for key, per_item in scores.items()}
    return out


@dataclass
class EffectDifferences:
    over: int = 0  # effects Redis holds more of than the recount (applied twice, or unknown)
    under: int = 0  # effects Redis lacks (lost)
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.over + self.under

    def note(self, over: bool, text: str, limit: int = 10) -> None:
        if over:
            self.over += 1
        else:
            self.under += 1
        if len(self.examples) < limit:
            self.examples.append(text)


def compare(live: DerivedState, expected: DerivedState) -> EffectDifferences:
    """Every score or member where the live state differs from the recount, counted once each."""
    out = EffectDifferences()
    for key in sorted(set(live.scores) | set(expected.scores)):
        have, want = live.scores.get(key, {}), expected.scores.get(key, {})
        for item in sorted(set(have) | set(want)):
            a, b = have.get(item, 0.0), want.get(item, 0.0)
            if abs(a - b) > SCORE_TOLERANCE * max(1.0, abs(b)):
                out.note(a > b, f"{key} {item}: redis {a:g}, recount {b:g}")
    for kind_user in sorted(set(live.members) | set(expected.members)):
        have_m, want_m = live.members.get(kind_user, set()), expected.members.get(kind_user, set())
        for member in sorted(have_m - want_m):
            out.note(True, f"{kind_user[0]} of {kind_user[1]}: only in redis: {member[:120]}")
        for member in sorted(want_m - have_m):
            out.note(False, f"{kind_user[0]} of {kind_user[1]}: only in the recount: {member[:120]}")
    return out


# ---------------------------------------------------------------- reading the live state (IO)


def effects_check(run: BenchRun) -> dict[str, Any]:
    """Redis's derived state against an independent recount from MongoDB (tooling.bench.ingest_checks).

    ``duplicates`` is the number of differing effects (a popularity score, a recent-list, seen or
    purchased member); ``duplicates_over`` of them Redis holds more of than the recount (an effect
    applied twice), ``duplicates_under`` fewer (an effect lost).
    """
    now_s = time.time()
    settings = run.settings
    expected = recount(
        _all_events(run),
        weights=settings.model.weights,
        recent_max=settings.consumer.recent_max,
        now_s=now_s,
    )
    keys = Keys(settings.redis.key_prefix)
    live = DerivedState()
    pipe = run.redis.pipeline(transaction=False)
    score_keys = [("pop:all", keys.pop_all())] + [
        (f"pop:{name}:{start}", keys.pop_bucket(name, start)) for name, start in live_buckets(now_s)
    ]
    for _, key in score_keys:
        pipe.zrange(key, 0, -1, withscores=True)
    for (kind, _), rows in zip(score_keys, pipe.execute(), strict=True):
        if rows:
            live.scores[kind] = {str(m): float(s) for m, s in rows}
    kinds = {"recent": keys.recent, "seen": keys.seen, "purchased": keys.purchased}
    for kind, key_of in kinds.items():
        head, tail = key_of("\0").split("\0")
        found = run.redis.scan_iter(match=key_of("*"), count=1000)
        users = [k[len(head) : len(k) - len(tail)] for k in found]
        pipe = run.redis.pipeline(transaction=False)
        for user in users:
            if kind == "recent":
                pipe.zrange(key_of(user), 0, -1, withscores=True)
            else:
                pipe.smembers(key_of(user))
        for user, got in zip(users, pipe.execute(), strict=True):
            if kind == "recent":
                live.members[(kind, user)] = {f"{m}@{int(s)}" for m, s in got}
            else:
                live.members[(kind, user)] = {str(m) for m in got}
    diff = compare(live, expected)
    return {
        "duplicates": diff.total,
        "duplicates_over": diff.over,
        "duplicates_under": diff.under,
        "duplicates_examples": diff.examples,
    }


def _all_events(run: BenchRun) -> Iterator[dict[str, Any]]:
    for batch in run.store.iter_events(batch_size=5000):
        yield from batch
