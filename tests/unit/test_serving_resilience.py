"""Redis outage (degraded, never 5xx), circuit breaker, hot swap under load, corrupt artifacts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage.circuit_breaker import CircuitBreaker
from tests.unit.test_serving_helpers import category_of, harness, model_files


def test_redis_down_gives_degraded_200_never_5xx() -> None:
    with harness() as h:
        h.realtime.record("y", "music-2", weight=9)
        time.sleep(0.3)  # let the popularity snapshot see it
        h.realtime.up = False
        body = h.recs("alice", k=3)
        assert body["degraded"] is True
        assert all(category_of(i["item_id"]) == "books" for i in body["items"])  # the model still answers
        stranger = h.recs("stranger", k=2)
        assert stranger["degraded"] is True and stranger["items"][0]["item_id"] == "music-2"  # snapshot
        popular = h.get("/v1/popular", k=2, window="all").json()
        assert popular["degraded"] is True and popular["items"][0]["item_id"] == "music-2"
        assert h.get("/v1/items/books-1/similar", k=2).status_code == 200
        for path in ("/v1/users/bob/recommendations", "/v1/popular"):
            assert h.get(path, category="games").status_code == 200
        ready = h.get("/readyz")  # degraded answers are still answers: stay in service
        assert ready.status_code == 200 and ready.json()["mode"] == "degraded"
        metrics = h.client.app.state.metrics  # type: ignore[attr-defined]
        assert metrics.degraded._value.get() >= 3
        h.realtime.up = True
        time.sleep(0.3)
        assert h.recs("alice", k=3)["degraded"] is False


def test_circuit_breaker_fails_fast_then_probes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_s=1.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure()
    assert breaker.allow()  # below threshold
    breaker.failure()
    assert not breaker.allow() and breaker.is_open
    now[0] = 1.5
    assert breaker.allow()  # one probe
    assert not breaker.allow()  # others still fail fast while it runs
    breaker.failure()
    assert not breaker.allow()
    now[0] = 3.0
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and not breaker.is_open


def test_an_abandoned_probe_frees_the_probe_slot() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_s=1.0, clock=lambda: now[0])
    breaker.failure()
    now[0] = 1.5
    assert breaker.allow()  # the probe
    assert not breaker.allow()
    breaker.abandon()  # e.g. the request was cancelled: no verdict on Redis
    assert breaker.allow() and breaker.is_open  # the next call probes; the circuit is still open


def test_hot_swap_under_concurrent_requests_has_no_failures() -> None:
    with harness() as h:
        stop = threading.Event()
        statuses: list[int] = []
        versions: set[str] = set()

        def hammer() -> None:
            while not stop.is_set():
                resp = h.get("/v1/users/alice/recommendations", k=5, exclude="books-0")
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    versions.add(resp.json()["model_version"])

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer) for _ in range(4)]
            last = 1
            for seed in range(1, 6):
                last = h.publish(model_files(seed=seed, users={"alice": "games"}))
                h.wait_for_version(last)
                time.sleep(0.05)
            stop.set()
            for f in futures:
                f.result()
        assert statuses and set(statuses) == {200}
        assert len(versions) >= 3
        assert h.recs("alice", k=3)["model_version"] == str(last)
        assert all(category_of(i["item_id"]) == "games" for i in h.recs("alice", k=3)["items"])


@pytest.mark.parametrize("files", [{"model.json": b"\x00garbage"}, {"other.bin": b"1"}])
def test_corrupt_artifact_is_refused_and_old_model_keeps_serving(files: dict[str, bytes]) -> None:
    with harness() as h:
        bad = h.publish(files)
        h.wait_for_refusal(bad)
        holder = h.client.app.state.holder  # type: ignore[attr-defined]
        metrics = h.client.app.state.metrics  # type: ignore[attr-defined]
        time.sleep(0.3)  # several polls: the bad version must not be retried
        assert metrics.model_load_failures._value.get() == 1
        assert holder.current.version == "1"
        assert h.recs("alice", k=2)["model_version"] == "1"
        info = h.get("/v1/model").json()
        assert str(bad) in info["refused_versions"]
        good = h.publish()
        h.wait_for_version(good)
