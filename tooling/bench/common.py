"""Scaffolding every streamrec benchmark shares: a scratch run on the dev stack, a consumer to measure,
its metrics, integrity checks (stored vs produced ids, Redis vs a rebuild) and the JSON + rich report.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core.errors import StreamrecError
from core.settings import Settings
from storage.kafka import make_producer
from tooling.devstack.processes import (
    REPO_ROOT,
    ManagedProcess,
    create_topics,
    drop_scratch,
    ensure_devstack,
    scratch_settings,
    start_consumer,
)
from tooling.producers.produce import DeliveryStats, Pacer, event_record, finish, item_record, send
from tooling.producers.simulator import Storefront, StorefrontConfig

log = logging.getLogger(__name__)

LOG_DIR = REPO_ROOT / ".devstack" / "bench-logs"
WARMUP_EVENTS = 200
STALL_TIMEOUT_S = 120.0


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        info["memory_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ---------------------------------------------------------------- the scratch run


@dataclass
class BenchRun:
    """One benchmark run's scratch namespace, clients and the consumer it started."""

    settings: Settings
    console: Console
    consumer: ManagedProcess | None = None
    extra_databases: list[str] = field(default_factory=list)
    extra_prefixes: list[str] = field(default_factory=list)
    acked_ids: list[str] = field(default_factory=list)
    stored_base: int = 0
    # Undone first when the run closes, however it ends (e.g. restoring CPU affinities it changed).
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import pymongo

        from storage.event_store import MongoEventStore
        from storage.realtime_state import make_redis

        self.mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(
            self.settings.mongo.uri.get_secret_value(),
            serverSelectionTimeoutMS=self.settings.mongo.timeout_ms,
        )
        self.store = MongoEventStore(self.mongo[self.settings.mongo.database])
        self.redis = make_redis(self.settings.redis)

    def stored(self) -> int:
        """Events in MongoDB (a full count: slow on the dev server, so not for tight polling)."""
        return self.store.count_events()

    def stored_ids(self) -> list[str]:
        return list(self.store.event_ids())

    def start_consumer(self, stored_base: int | None = None) -> ManagedProcess:
        """Start `streamrec consume`; ``stored_base`` is MongoDB's event count at this moment if known."""
        if stored_base is None:
            stored_base = self.stored() if self.consumer is not None else 0
        self.stored_base = stored_base
        self.consumer = start_consumer(self.settings, log_dir=LOG_DIR)
        return self.consumer

    def consumer_counts(self) -> dict[str, float]:
        """Interaction events per outcome the running consumer made durable (its own metrics)."""
        return consumer_outcomes(self.settings.consumer.metrics_port)

    def stored_now(self) -> float:
        """Events in MongoDB: the count when the consumer started plus what it has stored since.

        Polling MongoDB's count instead would load the dev server and slow the run it measures.
        """
        return self.stored_base + self.consumer_counts().get("stored", 0.0)

    def wait_stored(self, want: int, *, timeout_s: float = STALL_TIMEOUT_S, poll_s: float = 0.05) -> float:
        """Block until MongoDB holds ``want`` events; returns the monotonic time it was seen.

        Fails when the count stops moving for ``timeout_s`` or the consumer dies.
        """
        last, last_change = -1.0, time.monotonic()
        while True:
            count = self.stored_now()
            now = time.monotonic()
            if count >= want:
                return now
            if count != last:
                last, last_change = count, now
            if self.consumer is not None and not self.consumer.alive():
                raise StreamrecError(
                    f"the consumer exited (code {self.consumer.popen.returncode}) with {count:.0f}/{want} "
                    f"events stored; log {self.consumer.log_path}:\n{self.consumer.log_tail()}"
                )
            if now - last_change > timeout_s:
                raise StreamrecError(
                    f"stuck at {count:.0f}/{want} stored events for {timeout_s:.0f}s; consumer log: "
                    f"{self.consumer.log_path if self.consumer else '-'}"
                )
            time.sleep(poll_s)

    def close(self) -> None:
        for undo in reversed(self.cleanups):
            undo()
        if self.consumer is not None:
            self.consumer.stop()
        self.mongo.close()
        self.redis.close()
        drop_scratch(
            self.settings, databases=tuple(self.extra_databases), prefixes=tuple(self.extra_prefixes)
        )
        # Free the Kafka clients now, not at exit after the dev stack may be gone (they would log).
        gc.collect()


@contextmanager
def scratch_stack(label: str, console: Console) -> Iterator[Settings]:
    """Settings for a scratch database, key prefix and topics on the dev stack (started if needed).

    Afterwards the scratch data is dropped and the dev stack is stopped if this run started it.
    """
    from cli.context import configure_logging, load_settings
    from tooling.settings import ToolingSettings

    settings = load_settings(ToolingSettings)
    configure_logging("WARNING")
    with console.status("checking the dev stack"):
        stack = ensure_devstack(settings)
    if stack.started:
        console.print("started the dev stack for this run (it is stopped at the end)")
    run_settings = scratch_settings(stack.settings, label)
    try:
        yield run_settings
    finally:
        try:
            drop_scratch(run_settings)
        finally:
            stack.stop()


@contextmanager
def bench_run(label: str, console: Console) -> Iterator[BenchRun]:
    with scratch_stack(label, console) as settings:
        run = BenchRun(settings, console)
        try:
            create_topics(run.settings)
            yield run
        finally:
            run.close()


def storefront(events: int, seed: int, days: float = 1.0) -> Storefront:
    return Storefront(
        StorefrontConfig(
            users=max(200, events // 40), items=max(1000, events // 10), events=events, seed=seed, days=days
        )
    )


def produce_records(
    run: BenchRun,
    topic: str,
    records: list[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    stop: threading.Event | None = None,
    linger_ms: int = 5,
) -> DeliveryStats:
    producer = make_producer(run.settings.kafka, **{"linger.ms": linger_ms})
    stats = DeliveryStats()
    pacer = Pacer(rate)
    for key, value in records:
        if stop is not None and stop.is_set():
            break
        pacer.wait()
        send(producer, topic, key, value, stats)
    return finish(producer, stats, f"records to {topic}")


def warm_up(run: BenchRun, shop: Storefront) -> None:
    """Publish the catalog and a few events, and wait until they are stored: the consumer is assigned."""
    topics = run.settings.kafka.topics
    produce_records(run, topics.items, [item_record(u) for u in shop.catalog()])
    warm = list(storefront(WARMUP_EVENTS, seed=shop.config.seed + 1000).events())
    produce_records(run, topics.events, [event_record(e) for e in warm])
    run.acked_ids += [e.event_id for e in warm]
    run.wait_stored(len(run.acked_ids), timeout_s=90)


def integrity(run: BenchRun, produced: list[str]) -> dict[str, int]:
    stored = run.stored_ids()
    stored_set = set(stored)
    produced_set = set(produced)
    return {
        "lost": len(produced_set - stored_set),
        "duplicates": len(stored) - len(stored_set),
        "unexpected": len(stored_set - produced_set),
    }


def redis_vs_rebuild(run: BenchRun) -> tuple[bool, list[str]]:
    """Rebuild the run's state from MongoDB into a second prefix and compare it with the live one."""
    from consumer.rebuild import diff_snapshots, rebuild_cache, snapshot_state
    from storage.event_store import MongoEventStore
    from storage.realtime_state import RedisRealtimeState

    now_s = time.time()
    live = RedisRealtimeState(run.redis, run.settings.redis.key_prefix)
    reference_prefix = run.settings.redis.key_prefix + "rebuilt:"
    run.extra_prefixes.append(reference_prefix)
    rebuilt = RedisRealtimeState(run.redis, reference_prefix)
    store = MongoEventStore(run.mongo[run.settings.mongo.database])
    rebuild_cache(run.settings, store, rebuilt, now_s=now_s)
    diffs = diff_snapshots(snapshot_state(live, now_s), snapshot_state(rebuilt, now_s))
    return not diffs, diffs


# The revision a bench command started on (``remember_start_revision``, called as any bench starts):
# what ``write_report`` records, since the tree may change while a long run goes on.
_start_revision: str | None = None


def remember_start_revision() -> None:
    global _start_revision
    _start_revision = git_revision()


def git_revision() -> str:
    """The commit measured, with ``-dirty`` when the tree has uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'-dirty' if dirty else ''}" if rev else "unknown"


def write_report(path: Path, report: dict[str, Any], console: Console, title: str) -> None:
    """Write the JSON a bench's issue names; every report says which command and commit it measured."""
    report = {
        "command": " ".join(["streamrec", *sys.argv[1:]]),
        "git_revision": _start_revision or git_revision(),
        **report,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, dict | list) and key not in ("recovery_s", "caught_up_s"):
            continue
        if isinstance(value, float):
            value = f"{value:,.4g}" if abs(value) < 10 else f"{value:,.0f}"
        table.add_row(key, str(value))
    console.print(table)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------- consumer metrics


def _scrape(port: int) -> list[Any]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return []
    return list(text_string_to_metric_families(text))


def consumer_outcomes(port: int, exclude: tuple[str, ...] = ("item",)) -> dict[str, float]:
    """Events per outcome from a consumer's metrics endpoint (empty while it is not up), leaving out the
    ``type`` labels in ``exclude``; pass ``("item", "impression")`` for interaction events only."""
    out: dict[str, float] = {}
    for family in _scrape(port):
        if family.name != "streamrec_consumer_events":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("type") not in exclude:
                outcome = sample.labels.get("outcome", "")
                out[outcome] = out.get(outcome, 0.0) + sample.value
    return out


def consumer_batches(port: int) -> tuple[int, float]:
    """(batches made durable, seconds spent in them) from a consumer's metrics endpoint."""
    count, total = 0, 0.0
    for family in _scrape(port):
        if family.name == "streamrec_consumer_batch_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    count = int(sample.value)
                elif sample.name.endswith("_sum"):
                    total = float(sample.value)
    return count, total


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> float | None:
    """The monotonic time ``condition`` first held, or None after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic()
        time.sleep(poll_s)
    return None


def since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 3)
