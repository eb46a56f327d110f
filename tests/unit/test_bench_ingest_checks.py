"""`bench ingest`'s pure figures: the ceiling ratio and its flag, and the effects recount."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consumer.plans import PlannedEvent, plan_events
from core.keys import Keys
from core.settings import EventWeights
from storage.realtime_state import InMemoryRealtimeState
from tooling.bench.ingest_checks import DerivedState, ceiling_figures, compare, live_buckets, recount

NOW_S = 1_796_000_000.0
WEIGHTS = EventWeights()


def test_ratio_is_full_path_over_the_sink_ceiling() -> None:
    figures = ceiling_figures(800.0, parse=20_000.0, sink=1000.0)
    assert figures["ratio"] == 0.8
    assert figures["ratio_to_parse"] == 0.04
    assert figures["ceiling_suspect"] is False
    assert figures["ceiling_suspect_reasons"] == []


def test_a_full_path_faster_than_a_ceiling_is_flagged_not_hidden() -> None:
    figures = ceiling_figures(1130.0, parse=20_000.0, sink=1000.0)
    assert figures["ratio"] == 1.13
    assert figures["ceiling_suspect"] is True
    assert figures["ceiling_suspect_reasons"] == ["full path faster than the sink ceiling"]
    assert ceiling_figures(500.0, parse=900.0, sink=1000.0)["ceiling_suspect_reasons"] == [
        "sink ceiling faster than the parse ceiling"
    ]


def doc(n: int, user: str, item: str, etype: str = "view", value: float | None = None) -> dict[str, Any]:
    ts = datetime.fromtimestamp(NOW_S - 600 + n, tz=UTC)
    return {
        "_id": f"e{n}",
        "event_id": f"e{n}",
        "user_id": user,
        "item_id": item,
        "event_type": etype,
        "ts": ts,
        "ts_ms": int(ts.timestamp() * 1000),
        "value": value,
    }


DOCS = [
    doc(1, "u1", "a"),
    doc(2, "u1", "b", "purchase"),
    doc(3, "u2", "a", "rate", 4.0),
    doc(4, "u2", "c", "click"),
    doc(5, "u1", "c"),
]


def applied_state(docs: list[dict[str, Any]], recent_max: int = 2) -> DerivedState:
    """What the consumer's own planners write, read back as the check reads Redis."""
    state = InMemoryRealtimeState("sr:")
    ops = plan_events(
        Keys("sr:"),
        [PlannedEvent.from_doc(d) for d in docs],
        weights=WEIGHTS,
        recent_max=recent_max,
        now_s=NOW_S,
    )
    state.apply(ops, {})
    keys = state.keys
    out = DerivedState()
    score_keys = [("pop:all", keys.pop_all())] + [
        (f"pop:{n}:{s}", keys.pop_bucket(n, s)) for n, s in live_buckets(NOW_S)
    ]
    for kind, key in score_keys:
        if rows := state.zsets.get(key):
            out.scores[kind] = dict(rows)
    for user in {d["user_id"] for d in docs}:
        recent = state.zsets.get(keys.recent(user), {})
        out.members[("recent", user)] = {f"{m}@{int(s)}" for m, s in recent.items()}
        out.members[("seen", user)] = set(state.sets.get(keys.seen(user), set()))
        if bought := state.sets.get(keys.purchased(user)):
            out.members[("purchased", user)] = set(bought)
    return out


def test_the_consumers_effects_applied_once_match_the_recount() -> None:
    expected = recount(DOCS, weights=WEIGHTS, recent_max=2, now_s=NOW_S)
    assert expected.scores["pop:all"] == {"a": 1.0 + 4.0, "b": 5.0, "c": 1.0 + 1.0}
    assert len(expected.members[("recent", "u1")]) == 2
    assert expected.members[("purchased", "u1")] == {"b"}
    diff = compare(applied_state(DOCS), expected)
    assert (diff.total, diff.examples) == (0, [])


def test_a_batch_applied_twice_is_counted_per_doubled_effect() -> None:
    expected = recount(DOCS, weights=WEIGHTS, recent_max=2, now_s=NOW_S)
    doubled = applied_state([*DOCS, DOCS[1]])  # e2 (a purchase of b) applied a second time
    diff = compare(doubled, expected)
    # pop:all, the 1h bucket and the 7d bucket of item b each hold 5 too much; sets are idempotent.
    assert (diff.over, diff.under) == (3, 0)
    assert all(" b: redis 10, recount 5" in e for e in diff.examples)


def test_a_lost_effect_is_counted_as_under() -> None:
    expected = recount(DOCS, weights=WEIGHTS, recent_max=2, now_s=NOW_S)
    diff = compare(applied_state(DOCS[:-1]), expected)  # e5 (u1 viewed c) never applied
    assert diff.over >= 1  # u1's recent list keeps an older member instead of e5's
    assert diff.under >= 4  # pop:all and two buckets for c, e5 in the recent list
    assert any("only in the recount" in e and "e5" in e for e in diff.examples)
