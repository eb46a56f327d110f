"""Pure parts of `streamrec bench chaos`: the fault schedule, the poison records, and the accounting.

No IO here (tests/unit/test_bench_chaos.py checks it without servers); tooling/bench/chaos.py runs the
traffic and the faults and feeds what it observed into these functions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

CONSUMER_KILL = "consumer_kill"
REDIS_RESTART = "redis_restart"
MONGO_RESTART = "mongo_restart"
API_KILL = "api_kill"
FAULT_KINDS: tuple[str, ...] = (CONSUMER_KILL, REDIS_RESTART, MONGO_RESTART, API_KILL)

POISON_PREFIX = "chaos-poison-"
_POISON_ID = re.compile(rb"chaos-poison-(\d+)")

# Poison kinds: every one must end on the dead-letter topic (Kafka) or get a per-event 4xx (HTTP).
# The JSON-level ones (bad bytes) can only travel through Kafka: an HTTP body that is not JSON is
# rejected as a whole, which the HTTP stream checks separately.
POISON_KINDS: tuple[str, ...] = (
    "nul_property_key",
    "huge_int",
    "dollar_property_key",
    "nul_user_id",
    "control_event_id",
    "wrong_type",
    "deep_value",
    "lone_surrogate",
    "bad_json",
    "not_utf8",
)
HTTP_POISON_KINDS: tuple[str, ...] = POISON_KINDS[:8]


@dataclass(frozen=True)
class PlannedFault:
    kind: str
    at_s: float


def fault_schedule(
    duration_s: float,
    rounds: int | None = None,
    kinds: Sequence[str] = FAULT_KINDS,
    *,
    first_share: float = 0.1,
    last_share: float = 0.7,
) -> list[PlannedFault]:
    """Every kind ``rounds`` times, evenly spaced between ``first_share`` and ``last_share`` of the run.

    The head lets traffic reach its rate before the first fault; the tail after the last one leaves
    time to see the pipeline recover while traffic still flows. ``rounds`` defaults to one per
    2.5 minutes (at least one), so a 5-minute run injects each fault twice.
    """
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    if not kinds:
        return []
    n_rounds = rounds if rounds is not None else max(1, round(duration_s / 150.0))
    if n_rounds < 1:
        raise ValueError("rounds must be at least 1")
    total = n_rounds * len(kinds)
    start, end = first_share * duration_s, last_share * duration_s
    step = (end - start) / max(1, total - 1) if total > 1 else 0.0
    return [PlannedFault(kinds[n % len(kinds)], round(start + n * step, 3)) for n in range(total)]


# ---------------------------------------------------------------- poison


def poison_id(n: int) -> str:
    return f"{POISON_PREFIX}{n}"


def poison_kind(n: int, kinds: Sequence[str] = POISON_KINDS) -> str:
    return kinds[n % len(kinds)]


def _event(n: int, now_ms: int) -> dict[str, Any]:
    return {
        "event_id": poison_id(n),
        "event_type": "click",
        "user_id": f"chaos-poison-user-{n % 7}",
        "item_id": "chaos-poison-item",
        "timestamp": now_ms,
    }


def poison_value(n: int, kind: str, now_ms: int) -> bytes:
    """The bytes of poison record ``n``: each contains its id, so the dead-letter copy can be matched."""
    event = _event(n, now_ms)
    if kind == "nul_property_key":
        event["properties"] = {"a\u0000b": 1}
    elif kind == "huge_int":
        event["properties"] = {"big": 18446744073709551615}
    elif kind == "dollar_property_key":
        event["properties"] = {"$where": "1"}
    elif kind == "nul_user_id":
        event["user_id"] = f"chaos-poison\u0000user-{n}"
    elif kind == "control_event_id":
        event["event_id"] = f"{poison_id(n)}\n\u0007"
    elif kind == "wrong_type":
        event["item_id"] = {"not": "a string"}
        event["timestamp"] = [now_ms]
    elif kind == "deep_value":
        # Nested 3000 deep: beyond the JSON parser's limit and BSON's 100-level nesting.
        event["properties"] = {"deep": 0}
        raw = orjson.dumps(event)
        return raw.replace(b'"deep":0', b'"deep":' + b"[" * 3000 + b"]" * 3000)
    elif kind == "lone_surrogate":
        # orjson cannot write a lone surrogate, so it is spliced in as JSON escape text.
        raw = orjson.dumps(event)
        return raw.replace(b'"click"', b'"click","session_id":"s\\ud800"')
    elif kind == "bad_json":
        return orjson.dumps(event)[:-7] + b",,}"
    elif kind == "not_utf8":
        return orjson.dumps(event).replace(b"chaos-poison-item", b"chaos-\xff\xfe-item")
    else:
        raise ValueError(f"unknown poison kind {kind!r}")
    return orjson.dumps(event)


def poison_record(n: int, now_ms: int, kind: str | None = None) -> tuple[bytes, bytes]:
    """(key, value) of Kafka poison record ``n`` (of ``kind``, by default the n-th kind in turn); the
    key names it too, as dead letters keep the key."""
    return poison_id(n).encode(), poison_value(n, kind or poison_kind(n), now_ms)


def http_poison_body(n: int, now_ms: int, kind: str | None = None) -> bytes:
    """A ``POST /v1/events`` body holding one poison event (a JSON-valid kind)."""
    value = poison_value(n, kind or poison_kind(n, HTTP_POISON_KINDS), now_ms)
    return b'{"events":[' + value + b"]}"


def poison_of(key: bytes | None, value: bytes | None) -> str | None:
    """The poison id a dead-letter record carries (from its key, else from its bytes), or None."""
    for raw in (key, value):
        if raw:
            found = _POISON_ID.search(raw[:4096])
            if found:
                return POISON_PREFIX + found.group(1).decode()
    return None


def event_id_of(value: bytes | None) -> str | None:
    """The event id of a dead-lettered record, when its value is a JSON object with one."""
    if not value:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) else None


# ---------------------------------------------------------------- accounting


def delivery_accounting(
    *,
    valid_sent: Iterable[str],
    stored_ids: Iterable[str],
    dead_letters: Sequence[tuple[bytes | None, bytes | None]],
    poison_sent: Iterable[str],
) -> dict[str, Any]:
    """Where every record ended, from the ids we sent, MongoDB's ids and the dead-letter records.

    ``lost`` counts valid events a client was told were accepted (Kafka ack or HTTP 202) that are
    neither stored nor dead-lettered; poison must be dead-lettered exactly once and never stored.
    """
    valid = set(valid_sent)
    stored = set(stored_ids)
    poison = set(poison_sent)
    dead_poison: Counter[str] = Counter()
    dead_event_ids: set[str] = set()
    for key, value in dead_letters:
        pid = poison_of(key, value)
        if pid is not None:
            dead_poison[pid] += 1
            continue
        event_id = event_id_of(value)
        if event_id is not None:
            dead_event_ids.add(event_id)
    valid_dead = valid & dead_event_ids
    lost = valid - stored - dead_event_ids
    return {
        "events_sent": len(valid),
        "stored": len(stored),
        "dead_lettered": len(dead_letters),
        "lost": len(lost),
        "lost_ids": lost,
        "valid_dead_lettered": len(valid_dead),
        "poison_sent": len(poison),
        "poison_dead_lettered": len(poison & set(dead_poison)),
        "poison_dead_lettered_twice": sum(1 for pid, c in dead_poison.items() if pid in poison and c > 1),
        "poison_stored": len(poison & stored),
        "lost_sample": sorted(lost)[:10],
        "poison_missing_sample": sorted(poison - set(dead_poison), key=_poison_number)[:10],
        "poison_dead_lettered_twice_sample": sorted(
            (pid for pid, c in dead_poison.items() if pid in poison and c > 1), key=_poison_number
        )[:10],
    }


def _poison_number(pid: str) -> int:
    tail = pid[len(POISON_PREFIX) :]
    return int(tail) if tail.isdigit() else -1


def _leaves(tree: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(tree, list | tuple | set | frozenset):
        for value in tree:
            yield (*path, str(value)), True
    else:
        yield path, tree


# Sections of the Redis snapshot that event effects build; the catalog sections come from item updates.
EFFECT_SECTIONS: tuple[str, ...] = ("pop", "recent", "purchased", "seen")


def compare_redis(
    live: Mapping[str, Any], rebuilt: Mapping[str, Any], tolerance: float = 1e-6
) -> dict[str, Any]:
    """Entry-by-entry comparison of the live Redis snapshot with one rebuilt from MongoDB.

    ``duplicates``: an event effect only live, or a live popularity score above the rebuilt one —
    applied twice. ``redis_missing``: an entry only in the rebuild, or a live score below it — an
    effect lost (for example a restarted, empty Redis that was never rebuilt). ``redis_differing``:
    any other mismatch (a recent entry with another timestamp, a catalog entry only live or changed).
    """
    a = dict(_leaves(live))
    b = dict(_leaves(rebuilt))
    counts: dict[str, Counter[str]] = {"extra": Counter(), "missing": Counter(), "differing": Counter()}
    samples: list[tuple[int, str]] = []
    for path in sorted(set(a) | set(b)):
        x, y = a.get(path), b.get(path)
        section = path[0] if path else ""
        effect = section in EFFECT_SECTIONS
        if x is not None and y is not None:
            numeric = isinstance(x, int | float) and isinstance(y, int | float)
            if numeric and abs(x - y) <= tolerance * max(1.0, abs(x), abs(y)):
                continue
            if not numeric and x == y:
                continue
            kind = ("extra" if x > y else "missing") if numeric and section == "pop" else "differing"
            what = f"{x!r} live vs {y!r} rebuilt"
        elif x is not None:
            kind, what = ("extra" if effect else "differing"), "only live"
        else:
            kind, what = "missing", "only rebuilt"
        counts[kind][section] += 1
        rank = EFFECT_SECTIONS.index(section) if effect else len(EFFECT_SECTIONS)
        samples.append((rank, f"{'/'.join(path)}: {what}"[:240]))
    extra, missing, differing = (sum(counts[k].values()) for k in ("extra", "missing", "differing"))
    return {
        "duplicates": extra,
        "redis_missing": missing,
        "redis_differing": differing,
        "redis_consistent": extra == missing == differing == 0,
        "redis_by_section": {k: dict(sorted(v.items())) for k, v in counts.items() if v},
        # Event effects first: they are what a double count or a lost update shows up in.
        "redis_differences": [text for _rank, text in sorted(samples, key=lambda s: s[0])[:10]],
    }


# ---------------------------------------------------------------- recovery and HTTP windows


def first_progress_after(samples: Sequence[tuple[float, float]], t0: float) -> float | None:
    """The time of the first sample after ``t0`` whose value exceeds the last value seen at or before it.

    ``samples`` are (time, cumulative progress count), in time order.
    """
    base: float | None = None
    for t, value in samples:
        if t <= t0 or base is None:
            base = value
        elif value > base:
            return t
    return None


def first_ok_after(answers: Sequence[tuple[float, int]], t0: float) -> float | None:
    """The start time of the first answer after ``t0`` with a status below 500 (0 = no answer)."""
    for t, status in answers:
        if t >= t0 and 0 < status < 500:
            return t
    return None


def in_windows(t: float, windows: Sequence[tuple[float, float | None]]) -> bool:
    return any(start <= t and (end is None or t <= end) for start, end in windows)


def http_failures(
    answers: Sequence[tuple[float, int]], windows: Sequence[tuple[float, float | None]]
) -> dict[str, int]:
    """5xx answers and unanswered requests (status 0) outside the windows when the API was down."""
    outside = [status for t, status in answers if not in_windows(t, windows)]
    return {
        "http_5xx": sum(1 for s in outside if s >= 500),
        "http_no_answer": sum(1 for s in outside if s == 0),
        "http_5xx_in_windows": sum(1 for t, s in answers if s >= 500 and in_windows(t, windows)),
    }


def crash_causes(crashes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Unscheduled deaths grouped by the last line of the child's log (usually the exception)."""
    causes: Counter[str] = Counter()
    for crash in crashes:
        lines = [line.strip() for line in str(crash.get("log_tail", "")).splitlines() if line.strip()]
        causes[f"{crash.get('kind', '?')}: {lines[-1][:300] if lines else 'no output'}"] += 1
    return dict(causes.most_common())


def passed(report: Mapping[str, Any]) -> bool:
    """All targets of the issue met (plus no unscheduled crash and every fault recovered)."""
    return bool(
        report["events_sent"] > 0
        and report["lost"] == 0
        and report["duplicates"] == 0
        and report["poison_dead_lettered"] == report["poison_sent"]
        and report["poison_stored"] == 0
        and report["poison_dead_lettered_twice"] == 0
        and report["http_5xx"] == 0
        and report["http_no_answer"] == 0
        and report.get("http_poison_accepted", 0) == 0
        and report["redis_consistent"]
        and report["unscheduled_restarts"] == 0
        # SIGTERM ended the consumer within its grace period (-9: it had to be SIGKILLed).
        and report.get("consumer_exit_code") != -9
        and all(f.get("recovery_s") is not None for f in report["faults"])
    )
