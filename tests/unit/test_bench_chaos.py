"""The pure parts of `streamrec bench chaos`: fault schedule, poison records, accounting, recovery."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from core.events import ParseError, parse_interaction
from tooling.bench.chaos_plan import (
    API_KILL,
    FAULT_KINDS,
    HTTP_POISON_KINDS,
    POISON_KINDS,
    compare_redis,
    crash_causes,
    delivery_accounting,
    event_id_of,
    fault_schedule,
    first_ok_after,
    first_progress_after,
    http_failures,
    http_poison_body,
    passed,
    poison_of,
    poison_record,
)

NOW_MS = 1_790_000_000_000


def test_schedule_injects_every_kind_in_order_inside_the_run() -> None:
    schedule = fault_schedule(300.0)
    assert [f.kind for f in schedule] == [*FAULT_KINDS, *FAULT_KINDS]  # 5 minutes: two rounds
    times = [f.at_s for f in schedule]
    assert times == sorted(times)
    assert times[0] == pytest.approx(30.0) and times[-1] == pytest.approx(210.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) - min(gaps) < 0.01  # evenly spaced


def test_schedule_short_run_still_injects_each_fault_once() -> None:
    schedule = fault_schedule(60.0)
    assert sorted(f.kind for f in schedule) == sorted(FAULT_KINDS)
    assert all(6.0 <= f.at_s <= 42.0 for f in schedule)
    assert len(fault_schedule(60.0, rounds=3)) == 3 * len(FAULT_KINDS)
    assert [f.kind for f in fault_schedule(60.0, kinds=[API_KILL])] == [API_KILL]
    with pytest.raises(ValueError):
        fault_schedule(0.0)
    with pytest.raises(ValueError):
        fault_schedule(60.0, rounds=0)


@pytest.mark.parametrize("n", range(len(POISON_KINDS)))
def test_every_poison_record_is_rejected_by_the_parser_or_unstorable_and_traceable(n: int) -> None:
    key, value = poison_record(n, NOW_MS)
    assert key == f"chaos-poison-{n}".encode()
    # The dead-letter copy keeps the key; the value alone names the record too (if the key is lost).
    assert poison_of(key, value) == f"chaos-poison-{n}"
    assert poison_of(None, value) == f"chaos-poison-{n}"


def test_poison_kinds_cover_the_issue_list() -> None:
    values = {kind: poison_record(n, NOW_MS)[1] for n, kind in enumerate(POISON_KINDS)}
    assert b"a\\u0000b" in values["nul_property_key"]
    assert b"18446744073709551615" in values["huge_int"]
    assert b'"$where"' in values["dollar_property_key"]
    assert b"\\ud800" in values["lone_surrogate"]
    assert values["deep_value"].count(b"[") == 3000
    with pytest.raises(UnicodeDecodeError):
        values["not_utf8"].decode("utf-8")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(values["bad_json"])
    # The ones today's parser already rejects (the rest need the schema hardening of issue #10).
    for kind in ("bad_json", "not_utf8", "wrong_type", "lone_surrogate", "deep_value"):
        assert isinstance(parse_interaction(values[kind]), ParseError), kind


def test_http_poison_bodies_are_json_with_one_event() -> None:
    for n in range(len(HTTP_POISON_KINDS)):
        body = http_poison_body(n, NOW_MS)
        assert body.startswith(b'{"events":[') and body.endswith(b"]}")
        assert poison_of(None, body) == f"chaos-poison-{n}"


def test_accounting_splits_stored_dead_lettered_and_lost() -> None:
    dead = [
        (b"u1", orjson.dumps({"event_id": "e3", "user_id": "u1"})),  # a valid event dead-lettered
        (b"chaos-poison-1", b"{bad"),
        (b"chaos-poison-2", b"x"),
        (b"chaos-poison-2", b"x"),  # dead-lettered twice
        (None, b"\xff chaos-poison-3"),  # found by its bytes
        (b"k", b"not json"),
    ]
    out = delivery_accounting(
        valid_sent=["e1", "e2", "e3", "e4", "e4"],
        stored_ids=["e1", "e2", "x9", "chaos-poison-4"],
        dead_letters=dead,
        poison_sent=["chaos-poison-1", "chaos-poison-2", "chaos-poison-3", "chaos-poison-4"],
    )
    assert out["events_sent"] == 4
    assert out["stored"] == 4
    assert out["dead_lettered"] == 6
    assert out["lost"] == 1 and out["lost_sample"] == ["e4"] and out["lost_ids"] == {"e4"}
    assert out["valid_dead_lettered"] == 1
    assert out["poison_sent"] == 4
    assert out["poison_dead_lettered"] == 3
    assert out["poison_dead_lettered_twice"] == 1
    assert out["poison_dead_lettered_twice_sample"] == ["chaos-poison-2"]
    assert out["poison_stored"] == 1
    assert out["poison_missing_sample"] == ["chaos-poison-4"]


def test_event_id_of_tolerates_any_bytes() -> None:
    assert event_id_of(b'{"event_id": "a"}') == "a"
    for raw in (None, b"", b"[1]", b'{"event_id": 5}', b"\xff"):
        assert event_id_of(raw) is None


def test_redis_comparison_tells_doubled_from_missing_effects() -> None:
    rebuilt = {
        "recent": {"u1": {"click:i1": 100.0, "view:i2": 90.0}},
        "pop": {"all": {"i1": 2.0, "i2": 1.0}, "1h": {"i1": 2.0}},
        "seen": {"u1": ["i1", "i2"]},
        "unavailable": [],
        "items": {"i1": {"category": "c0"}},
    }
    assert compare_redis(rebuilt, rebuilt) == {
        "duplicates": 0,
        "redis_missing": 0,
        "redis_differing": 0,
        "redis_consistent": True,
        "redis_by_section": {},
        "redis_differences": [],
    }
    live = {
        "recent": {"u1": {"click:i1": 100.0, "view:i2": 91.0, "view:i3": 95.0}},
        "pop": {"all": {"i1": 4.0, "i2": 1.0 + 1e-9}, "1h": {}},
        "seen": {"u1": ["i1"]},
        "unavailable": ["i9"],  # catalog: only live is a difference, not a doubled effect
        "items": {"i1": {"category": "c1"}},
    }
    out = compare_redis(live, rebuilt)
    # Doubled: pop/all/i1 (4 > 2) and recent view:i3 only live; missing: pop/1h/i1 and seen i2.
    assert out["duplicates"] == 2
    assert out["redis_missing"] == 2
    # recent view:i2 with another timestamp, unavailable i9, item i1's category
    assert out["redis_differing"] == 3
    assert out["redis_consistent"] is False
    assert out["redis_by_section"] == {
        "extra": {"pop": 1, "recent": 1},
        "missing": {"pop": 1, "seen": 1},
        "differing": {"items": 1, "recent": 1, "unavailable": 1},
    }
    assert out["redis_differences"][0].startswith("pop/")  # event effects listed first
    assert any("pop/all/i1" in line for line in out["redis_differences"])


def test_recovery_is_the_first_progress_after_the_restore() -> None:
    samples = [(1.0, 10.0), (2.0, 20.0), (3.0, 20.0), (4.0, 20.0), (5.0, 25.0)]
    assert first_progress_after(samples, 2.5) == 5.0
    assert first_progress_after(samples, 0.5) == 2.0
    assert first_progress_after(samples, 5.0) is None
    assert first_progress_after([], 1.0) is None
    answers = [(1.0, 200), (2.0, 0), (3.0, 503), (4.0, 200)]
    assert first_ok_after(answers, 1.5) == 4.0
    assert first_ok_after(answers, 4.5) is None


def test_http_failures_ignore_the_api_down_windows() -> None:
    answers = [(1.0, 200), (2.0, 0), (2.5, 502), (3.0, 200), (9.0, 503), (10.0, 0), (11.0, 422)]
    out = http_failures(answers, [(1.5, 3.0)])
    assert out == {"http_5xx": 1, "http_no_answer": 1, "http_5xx_in_windows": 1}
    assert http_failures(answers, [(1.5, None)])["http_5xx"] == 0  # a window never closed


def _good_report() -> dict[str, object]:
    return {
        "events_sent": 10,
        "lost": 0,
        "duplicates": 0,
        "poison_sent": 2,
        "poison_dead_lettered": 2,
        "poison_stored": 0,
        "poison_dead_lettered_twice": 0,
        "http_5xx": 0,
        "http_no_answer": 0,
        "http_poison_accepted": 0,
        "redis_consistent": True,
        "unscheduled_restarts": 0,
        "consumer_exit_code": 0,
        "faults": [{"kind": "api_kill", "recovery_s": 1.5}],
    }


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("events_sent", 0),
        ("lost", 1),
        ("duplicates", 1),
        ("poison_dead_lettered", 1),
        ("poison_stored", 1),
        ("poison_dead_lettered_twice", 1),
        ("http_5xx", 1),
        ("http_no_answer", 1),
        ("http_poison_accepted", 1),
        ("redis_consistent", False),
        ("unscheduled_restarts", 1),
        ("consumer_exit_code", -9),
        ("faults", [{"kind": "api_kill", "recovery_s": None}]),
    ],
)
def test_passed_needs_every_target(key: str, bad: object) -> None:
    report = _good_report()
    assert passed(report)
    report[key] = bad
    assert not passed(report)


def test_split_streams_deals_events_by_rate_and_keeps_order() -> None:
    from datetime import UTC, datetime

    from core.events import EventType, InteractionEvent
    from tooling.bench.chaos_run import split_streams

    events = [
        InteractionEvent(
            event_id=f"e{n}",
            event_type=EventType.VIEW,
            user_id="u",
            item_id="i",
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for n in range(300)
    ]
    kafka, http = split_streams(events, kafka_rate=100.0, http_rate=50.0)
    assert (len(kafka), len(http)) == (200, 100)
    assert sorted([*kafka, *http], key=lambda e: int(e.event_id[1:])) == events
    assert [e.event_id for e in http] == sorted((e.event_id for e in http), key=lambda i: int(i[1:]))


def test_supervised_child_that_dies_is_recorded_and_restarted(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tooling.bench.chaos_run import Recorder, Supervised
    from tooling.devstack.processes import ManagedProcess

    def start() -> ManagedProcess:
        log = tmp_path / f"child-{len(list(tmp_path.iterdir()))}.log"
        with open(log, "wb") as out:
            code = "import sys; print('boom: the child failed'); sys.exit(3)"
            popen = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
        return ManagedProcess(name="child", popen=popen, log_path=log)

    rec = Recorder()
    child = Supervised("consumer", start, rec)
    first = child.start()
    first.popen.wait(30)
    child.check()
    assert child.generation == 2 and child.proc is not first
    [death] = rec.unscheduled
    assert death["kind"] == "consumer_died" and death["exit_code"] == 3
    assert "boom: the child failed" in death["log_tail"]
    assert crash_causes(rec.unscheduled) == {"consumer_died: boom: the child failed": 1}
    second = child.proc
    assert second is not None
    child.stop()
    second.popen.wait(30)
    child.check()  # stopped on purpose: not a death
    assert len(rec.unscheduled) == 1
