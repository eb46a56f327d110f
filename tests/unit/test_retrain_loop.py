from __future__ import annotations

import threading
from collections.abc import Callable

from retrain.loop import run_every
from storage.retrain_requests import InMemoryRetrainRequests


class FakeTime(threading.Event):
    """A stop event whose wait() advances a fake clock instead of sleeping."""

    def __init__(self, at: dict[float, Callable[[], object]] | None = None) -> None:
        super().__init__()
        self.now = 0.0
        self.at = dict(at or {})  # fake time -> what happens once the clock reaches it

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
        for when in sorted(w for w in self.at if w <= self.now):
            self.at.pop(when)()
        return self.is_set()


def test_runs_on_the_interval() -> None:
    t = FakeTime()
    starts: list[float] = []
    runs = run_every(900, lambda: starts.append(t.now), stop=t, clock=t.clock, max_runs=3, poll_s=60)
    assert runs == 3
    assert starts == [0.0, 900.0, 1800.0]


def test_runs_early_when_enough_new_events_arrive() -> None:
    t = FakeTime()
    starts: list[float] = []
    # 10 new events per fake second.
    runs = run_every(
        3600,
        lambda: starts.append(t.now),
        count_events=lambda: int(t.now * 10),
        after_events=1000,
        stop=t,
        clock=t.clock,
        max_runs=2,
        poll_s=30,
    )
    assert runs == 2
    assert starts[1] == 120.0  # 1000 events after 100 s, noticed at the next 30 s poll


def test_a_failing_run_is_logged_and_the_loop_goes_on() -> None:
    t = FakeTime()
    calls: list[float] = []

    def flaky() -> None:
        calls.append(t.now)
        if len(calls) == 1:
            raise RuntimeError("boom")

    assert run_every(60, flaky, stop=t, clock=t.clock, max_runs=2, poll_s=10) == 2
    assert calls == [0.0, 60.0]


def test_a_failing_event_count_falls_back_to_the_interval() -> None:
    t = FakeTime()
    starts: list[float] = []

    def broken_count() -> int:
        raise ConnectionError("down")

    run_every(
        300,
        lambda: starts.append(t.now),
        count_events=broken_count,
        after_events=1,
        stop=t,
        clock=t.clock,
        max_runs=2,
    )
    assert starts == [0.0, 300.0]


def test_stop_ends_the_loop() -> None:
    t = FakeTime()
    t.set()
    assert run_every(60, lambda: None, stop=t, clock=t.clock) == 0


def test_an_admin_request_triggers_a_run_at_once() -> None:
    requests = InMemoryRetrainRequests()
    t = FakeTime(at={120.0: lambda: requests.request("new catalog")})  # 120 s after the first run
    starts: list[float] = []

    runs = run_every(
        3600, lambda: starts.append(t.now), requests=requests, stop=t, clock=t.clock, max_runs=2, poll_s=60
    )
    assert runs == 2
    assert starts == [0.0, 120.0]
    assert requests.pending() == []  # the run took the request


def test_a_failing_request_check_falls_back_to_the_interval() -> None:
    t = FakeTime()
    starts: list[float] = []
    broken = InMemoryRetrainRequests()
    broken.fail_with = ConnectionError("mongo down")

    run_every(
        600, lambda: starts.append(t.now), requests=broken, stop=t, clock=t.clock, max_runs=2, poll_s=60
    )
    assert starts == [0.0, 600.0]


def test_housekeeping_runs_on_every_poll_and_its_failures_do_not_stop_the_loop() -> None:
    t = FakeTime()
    polls: list[float] = []

    def scrub() -> None:
        polls.append(t.now)
        if len(polls) == 2:
            raise RuntimeError("mongo hiccup")

    runs = run_every(60, lambda: None, between_runs=scrub, stop=t, clock=t.clock, max_runs=2, poll_s=20)
    assert runs == 2
    assert polls == [0.0, 20.0, 40.0], "every poll while waiting, also after a failure"
