"""Phases of `bench ingest` besides the full path: the two ceilings (each in a process of its own,
``tooling.bench.ingest_ceiling``), the recovery after SIGKILLs, the MongoDB server in use, and the
completion wait that does not load the consumer being measured.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any

from core.errors import StreamrecError
from core.keys import Keys
from storage.kafka import make_producer
from tooling.bench.common import (
    LOG_DIR,
    STALL_TIMEOUT_S,
    BenchRun,
    produce_records,
    since,
    storefront,
    wait_for,
)
from tooling.devstack.processes import REPO_ROOT
from tooling.producers.produce import DeliveryStats, event_record


def wait_applied(
    run: BenchRun, records: int, *, timeout_s: float = STALL_TIMEOUT_S, poll_s: float = 0.05
) -> float:
    """Block until the consumer has applied the first ``records`` records of the events topic;
    returns the monotonic time it was seen.

    It reads the consumer's ``applied`` offsets from Redis (set in the same atomic step as a batch's
    effects, after its MongoDB insert) instead of scraping the consumer's metrics endpoint: a scrape
    costs the consumer about 2 ms of CPU, and 20 a second would be charged to its CPU per event.
    Offsets of a fresh topic are dense from 0, so ``sum(applied + 1)`` counts the records applied.
    """
    topic = run.settings.kafka.topics.events
    producer = make_producer(run.settings.kafka)
    partitions = sorted(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    keys = Keys(run.settings.redis.key_prefix)
    names = [keys.applied(topic, p) for p in partitions]
    last, last_change = -1, time.monotonic()
    while True:
        done = sum(int(v) + 1 for v in run.redis.mget(names) if v is not None)
        now = time.monotonic()
        if done >= records:
            return now
        if done != last:
            last, last_change = done, now
        if run.consumer is not None and not run.consumer.alive():
            raise StreamrecError(
                f"the consumer exited (code {run.consumer.popen.returncode}) with {done}/{records} records "
                f"applied; log {run.consumer.log_path}:\n{run.consumer.log_tail()}"
            )
        if now - last_change > timeout_s:
            raise StreamrecError(f"stuck at {done}/{records} applied records for {timeout_s:.0f}s")
        time.sleep(poll_s)


def run_ceiling(
    run: BenchRun,
    mode: str,
    records: int,
    *,
    tag: str = "",
    timeout_s: float = 600.0,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """One ceiling (``tooling.bench.ingest_ceiling``) in a process of its own, reading the run's events
    topic from the start with its own consumer group; its JSON result. ``cpus``: the cores it runs on
    (the measured consumer's, when the bench pins it)."""
    from tooling.bench.ingest_ceiling import scratch_names
    from tooling.devstack.processes import child_env

    if mode == "sink":
        database, prefix = scratch_names(run.settings, tag)
        if database not in run.extra_databases:
            run.extra_databases.append(database)
            run.extra_prefixes.append(prefix)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    out = LOG_DIR / f"ceiling-{mode}-{time.time_ns()}.json"
    log_path = out.with_suffix(".log")
    command = [
        sys.executable,
        "-m",
        "tooling.bench.ingest_ceiling",
        mode,
        "--group",
        f"{run.settings.kafka.group_id}-ceiling-{mode}{tag}",
        "--events",
        str(records),
        "--out",
        str(out),
        "--timeout-s",
        str(timeout_s),
        "--tag",
        tag,
    ]
    with open(log_path, "wb") as log_file:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=child_env(run.settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=timeout_s + 120,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    if not out.exists():
        raise StreamrecError(f"the {mode} ceiling failed (exit {done.returncode}); log {log_path}")
    result: dict[str, Any] = json.loads(out.read_text())
    if not result["complete"]:
        raise StreamrecError(f"the {mode} ceiling read {result['events']}/{records} records; log {log_path}")
    return result


def stand_in(run: BenchRun) -> dict[str, Any]:
    """Which MongoDB server the run measured (the issue allows a faster stand-in; none is used)."""
    info = run.mongo.server_info()
    name = f"SecantusDB {info['secantusVersion']}" if "secantusVersion" in info else "mongod"
    return {
        "mongodb_server": f"{name} (MongoDB wire version {info.get('version')})",
        "stand_in": None,
        "stand_in_note": (
            "no mongod binary on this machine and none installable offline: the dev server is measured"
        ),
    }


def recovery(run: BenchRun, *, kills: int, rate: float, seed: int) -> list[float | None]:
    """SIGKILL the consumer ``kills`` times while events stream at ``rate``; per kill, seconds from
    the restart until the new process has stored an event (it holds partitions and consumes)."""
    topic = run.settings.kafka.topics.events
    stream = [event_record(e) for e in storefront(int(rate * (kills * 25 + 10)), seed=seed + 3000).events()]
    stop = threading.Event()
    sent: list[DeliveryStats] = []
    thread = threading.Thread(
        target=lambda: sent.append(produce_records(run, topic, stream, rate=rate, stop=stop)),
        name="bench-recovery-stream",
        daemon=True,
    )
    thread.start()
    rng = random.Random(seed)
    out: list[float | None] = []
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 2.0))
            assert run.consumer is not None
            run.consumer.kill()
            restarted = time.monotonic()
            run.start_consumer(stored_base=0)
            consuming = wait_for(lambda: sum(run.consumer_counts().values()) > 0, STALL_TIMEOUT_S)
            out.append(since(restarted, consuming))
    finally:
        stop.set()
        thread.join(120)
    acked = sent[0].acked if sent else 0
    run.acked_ids += [_event_id(v) for _k, v in stream[:acked]]
    return out


def _event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])
