"""`streamrec serve --workers 2` on real Redis and MongoDB: /metrics counts every worker's requests,
whichever worker answers the scrape (Prometheus multiprocess mode)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tooling.bench.cpu_placement import children_of
from tooling.bench.serve_load import parse_cache_counts
from tooling.devstack.processes import free_port, start_streamrec

REQUESTS = 60


def test_metrics_sum_the_requests_of_every_worker(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    serving = settings.serving.model_copy(update={"host": "127.0.0.1", "port": port, "public_read": True})
    proc = start_streamrec(
        ["serve", "--workers", "2"],
        settings.model_copy(update={"serving": serving}),
        name="serve",
        log_dir=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(base + "/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        proc.wait_until(ready, 120, "GET /readyz answers 200", interval_s=0.5)
        pids = set()
        for n in range(REQUESTS):
            # A new connection each time, so the kernel spreads them over both workers.
            with httpx.Client(base_url=base, timeout=10.0) as client:
                assert client.get(f"/v1/users/u{n}/recommendations").status_code == 200
        for _ in range(10):
            with httpx.Client(base_url=base, timeout=10.0) as client:
                text = client.get("/metrics").text
            # Every request is one cache lookup (a miss here: each user asks once).
            hits, misses = parse_cache_counts(text)
            assert hits + misses == REQUESTS
            pids |= {
                line.split('pid="', 1)[1].split('"', 1)[0]
                for line in text.splitlines()
                if line.startswith("streamrec_serving_producer_rebuilds_total{")
            }
        # The pulled counts come labelled with the worker that answered.
        assert len(pids) >= 1
    finally:
        workers = children_of(proc.pid)
        # A worker's clean-up is bounded (serving.shutdown_grace_s, 10 s): give it that and more.
        code = proc.stop(timeout_s=45.0)
        for pid in workers:  # a supervisor killed after its timeout leaves its workers running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    log = proc.log_path.read_text(errors="replace")
    # Now and then (about 1 run in 4 in a full suite) one worker used not to finish its shutdown
    # after SIGTERM: a serving loop lost its cancel inside a Redis call (Python 3.11's wait_for,
    # storage.realtime_reader.raise_lost_cancel; tests/integration/test_redis_cancellation.py). That
    # is fixed and the app's shutdown re-cancels a loop that has not ended (serving.polling.stop_tasks),
    # so an unclean exit fails here, quoting the stacks serving.bounded_shutdown wrote to the log.
    if code != 0 or "shutdown_grace_exceeded" in log:
        at = log.find("shutdown_grace_exceeded")
        pytest.fail(f"serve --workers 2 did not exit cleanly after SIGTERM (exit {code}): {log[at:][:3000]}")
    assert "task_ignored_cancel" not in log, log[log.find("task_ignored_cancel") :][:1000]
