"""The latency benchmark's CPU placement: the API on cores of its own, restored afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tooling.bench.cpu_placement import pin_api, split_cpus, tasks_of


def test_split_gives_the_api_the_first_half_and_the_rest_the_others() -> None:
    assert split_cpus([0]) is None
    assert split_cpus([1, 0]) == ([0], [1])
    assert split_cpus(range(5)) == ([0, 1], [2, 3, 4])
    assert split_cpus([3, 3, 7]) == ([3], [7])


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and 2+ cores",
)
def test_pin_moves_every_thread_of_the_api_and_restore_puts_them_back() -> None:
    before_here = os.sched_getaffinity(0)
    # A stand-in API with a second thread started before the pinning (like the Kafka client's).
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)"
    api = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):
            if len(tasks_of(api.pid)) >= 2:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        placement = pin_api([api.pid])
        assert placement is not None
        assert all(os.sched_getaffinity(tid) == set(placement.api_cpus) for tid in tasks_of(api.pid))
        assert os.sched_getaffinity(0) == set(placement.other_cpus)
        assert not set(placement.api_cpus) & set(placement.other_cpus)
        placement.restore()
        assert os.sched_getaffinity(0) == before_here
        assert all(os.sched_getaffinity(tid) == before_here for tid in tasks_of(api.pid))
    finally:
        api.kill()
        api.wait()
