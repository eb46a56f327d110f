from __future__ import annotations

import threading

from retrain.loop import run_every


class FakeTime(threading.Event):
    """A stop event whose wait() advances a fake clock instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
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
    t = FakeTime()
    starts: list[float] = []
    pending = [120.0]  # one request arrives 120 s after the first run

    def take() -> bool:
        if pending and t.now >= pending[0]:
            pending.pop()
            return True
        return False

    runs = run_every(
        3600, lambda: starts.append(t.now), take_request=take, stop=t, clock=t.clock, max_runs=2, poll_s=60
    )
    assert runs == 2
    assert starts == [0.0, 120.0]


def test_a_failing_request_check_falls_back_to_the_interval() -> None:
    t = FakeTime()
    starts: list[float] = []

    def broken() -> bool:
        raise ConnectionError("mongo down")

    run_every(
        600, lambda: starts.append(t.now), take_request=broken, stop=t, clock=t.clock, max_runs=2, poll_s=60
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
