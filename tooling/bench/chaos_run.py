"""The moving parts of `streamrec bench chaos`: a private dev stack, supervised child processes, the
traffic threads (Kafka, `POST /v1/events`, recommendations) and the progress monitor.

Everything observed is appended to a ``Recorder`` with times relative to the start of the traffic;
tooling/bench/chaos_plan.py turns those observations into the report.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.errors import ConfigError, StreamrecError
from core.events import InteractionEvent
from core.settings import Settings
from tooling.bench.chaos_plan import (
    HTTP_POISON_KINDS,
    POISON_KINDS,
    http_poison_body,
    poison_id,
    poison_record,
)
from tooling.devstack.processes import ManagedProcess, free_port, with_stack_urls
from tooling.producers.produce import Pacer, event_record

log = logging.getLogger(__name__)

HTTP_RETRY_FOR_S = 90.0  # a storefront retries a refused batch (same event ids) this long, then gives up
WATCH_EVERY_S = 0.25


# ---------------------------------------------------------------- the private stack


@contextlib.contextmanager
def private_stack() -> Iterator[tuple[Settings, Any]]:
    """Tansu, SecantusDB and redis-server of our own on free ports, in a temp dir removed afterwards.

    Never the shared dev stack: the benchmark restarts Redis and MongoDB, which would break anyone
    else using them.
    """
    from cli.context import configure_logging, load_settings
    from tooling.devstack.servers import start_stack, stop_stack
    from tooling.settings import ToolingSettings

    settings = load_settings(ToolingSettings)
    configure_logging("WARNING")
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port()
        if port not in ports:
            ports.append(port)
    base = Path(tempfile.mkdtemp(prefix="streamrec-chaos-"))
    try:
        state = start_stack(base, *ports)  # stops what it started if one server fails to start
        try:
            yield with_stack_urls(settings, state), state
        finally:
            stop_stack(state)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def restart_server(state: Any, name: str, down_s: float, timeout_s: float = 60.0) -> None:
    """Stop one server of the private stack, keep it down ``down_s``, start it again on its port."""
    from tooling.devstack.servers import start_server, stop_server

    old = state.servers[name]
    if not stop_server(old):
        raise StreamrecError(f"could not stop {name} (pid {old.pid})")
    time.sleep(down_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state.servers[name] = start_server(name, state.base_dir, old.port, timeout_s=timeout_s)
            return
        except ConfigError:  # the port is not free yet (the old socket lingers)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ---------------------------------------------------------------- observations


@dataclass
class Recorder:
    """What the traffic and the monitor saw; times are seconds since ``t0`` (monotonic)."""

    t0: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kafka_acked: list[str] = field(default_factory=list)
    kafka_failed: int = 0
    http_accepted: list[str] = field(default_factory=list)
    http_valid_rejected: int = 0
    http_gave_up: int = 0
    poison_acked: list[str] = field(default_factory=list)
    http_poison_sent: int = 0
    http_poison_rejected: int = 0
    http_poison_accepted: int = 0
    ingest_answers: list[tuple[float, int]] = field(default_factory=list)
    recs_answers: list[tuple[float, int]] = field(default_factory=list)
    progress: list[tuple[float, float]] = field(default_factory=list)
    unscheduled: list[dict[str, Any]] = field(default_factory=list)
    thread_errors: list[str] = field(default_factory=list)
    # Anomalies by category: how many, and the first one seen in full.
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, name: str, values: Sequence[Any]) -> None:
        with self.lock:
            getattr(self, name).extend(values)

    def bump(self, name: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def note(self, category: str, first: str) -> None:
        with self.lock:
            entry = self.notes.setdefault(category, {"count": 0, "first": first[:500]})
            entry["count"] += 1


# ---------------------------------------------------------------- supervised children


class Supervised:
    """A child process the benchmark keeps running: a scheduled kill restarts it at once, and an
    unscheduled death (a crash the product should not have) is recorded with its log and restarted."""

    def __init__(self, name: str, start: Callable[[], ManagedProcess], rec: Recorder) -> None:
        self.name = name
        self._start = start
        self.rec = rec
        self.lock = threading.RLock()
        self.generation = 0
        self.proc: ManagedProcess | None = None
        self.logs: list[Path] = []
        self.stopped = False

    def start(self) -> ManagedProcess:
        with self.lock:
            proc = self._start()
            self.proc = proc
            self.generation += 1
            self.logs.append(proc.log_path)
            return proc

    def kill_and_restart(self) -> None:
        with self.lock:
            if self.proc is not None:
                self.proc.kill()
            self.start()

    def check(self) -> None:
        """Restart the child if it died on its own; waits a second first so a crash loop is bounded."""
        with self.lock:
            proc = self.proc
            if self.stopped or proc is None or proc.alive():
                return
            self.rec.add(
                "unscheduled",
                [
                    {
                        "kind": f"{self.name}_died",
                        "at_s": round(self.rec.now(), 3),
                        "exit_code": proc.popen.returncode,
                        "log": str(proc.log_path),
                        "log_tail": proc.log_tail(8)[-2000:],
                    }
                ],
            )
            time.sleep(1.0)
            try:
                self.start()
            except StreamrecError as exc:
                self.rec.add("thread_errors", [f"restarting {self.name}: {exc}"[:1000]])

    def stop(self) -> int | None:
        with self.lock:
            self.stopped = True
            return self.proc.stop() if self.proc is not None else None


def watchdog(children: Sequence[Supervised], stop: threading.Event) -> None:
    while not stop.wait(WATCH_EVERY_S):
        for child in children:
            child.check()


def progress_monitor(consumer: Supervised, port: int, rec: Recorder, stop: threading.Event) -> None:
    """Samples the events the consumer made durable (its metrics, summed over every process it ran as)."""
    from tooling.bench.common import consumer_outcomes

    base, last, generation = 0.0, 0.0, consumer.generation
    while not stop.wait(WATCH_EVERY_S):
        counts = consumer_outcomes(port)
        if consumer.generation != generation:
            base, last, generation = base + last, 0.0, consumer.generation
        if counts:
            last = max(last, sum(counts.values()))
        rec.add("progress", [(rec.now(), base + last)])


# ---------------------------------------------------------------- traffic


def split_streams(
    events: Sequence[InteractionEvent], kafka_rate: float, http_rate: float
) -> tuple[list[InteractionEvent], list[InteractionEvent]]:
    """Deal the storefront's events to the two paths in proportion to their rates (same shoppers)."""
    share = http_rate / (kafka_rate + http_rate)
    kafka: list[InteractionEvent] = []
    http: list[InteractionEvent] = []
    for n, event in enumerate(events):
        (http if int((n + 1) * share) > int(n * share) else kafka).append(event)
    return kafka, http


class PoisonCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


class _Stopped(Exception):
    """The run stopped while a producer waited for room in its local queue."""


def kafka_traffic(
    settings: Settings,
    events: Sequence[InteractionEvent],
    rate: float,
    poison_share: float,
    poison: PoisonCounter,
    rec: Recorder,
    stop: threading.Event,
) -> None:
    from storage.kafka import make_producer
    from storage.kafka_publish import produce_one

    topic = settings.kafka.topics.events
    producer = make_producer(settings.kafka, **{"linger.ms": 5})

    def delivered(ids: list[str], what: str) -> Callable[[Any, Any], None]:
        def callback(err: Any, _msg: Any) -> None:
            if err is None:
                rec.add(what, ids)
            else:
                rec.bump("kafka_failed")

        return callback

    def room() -> None:
        producer.poll(0.05)
        if stop.is_set():
            raise _Stopped  # a full queue is not waited out once the run is over

    def produce(key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        if stop.is_set():
            return
        with contextlib.suppress(_Stopped):
            produce_one(producer, topic, (key, value, None), on_delivery=on_delivery, wait_for_room=room)
            producer.poll(0)

    pacer, owed, sent = Pacer(rate), 0.0, 0
    for event in events:
        if stop.is_set():
            break
        pacer.wait()
        key, value = event_record(event)
        produce(key, value, delivered([event.event_id], "kafka_acked"))
        owed += poison_share
        if owed >= 1.0:
            owed -= 1.0
            n = poison.next()
            kind = POISON_KINDS[sent % len(POISON_KINDS)]  # every kind in turn on this path
            sent += 1
            pkey, pvalue = poison_record(n, int(time.time() * 1000), kind)
            produce(pkey, pvalue, delivered([poison_id(n)], "poison_acked"))
    left = producer.flush(30.0)
    if left:
        rec.add("thread_errors", [f"kafka traffic: {left} records unacknowledged after 30s"])


def _post(client: Any, body: bytes, rec: Recorder, stop_hard: threading.Event) -> tuple[int, Any]:
    """POST until answered below 500 (retrying like a storefront would), or give up: (status, json)."""
    started, pause = time.monotonic(), 0.1
    while True:
        at = rec.now()
        try:
            resp = client.post("/v1/events", content=body)
            status, payload = resp.status_code, resp
            if status >= 500:
                rec.note(f"ingest_{status}", f"at {at:.1f}s: {resp.text[:300]}")
        except Exception:  # connection refused / reset / timeout while the API is down
            status, payload = 0, None
        rec.add("ingest_answers", [(at, status)])
        if 0 < status < 500:
            try:
                return status, payload.json() if payload is not None else None
            except ValueError:
                return status, None
        if stop_hard.is_set() or time.monotonic() - started > HTTP_RETRY_FOR_S:
            return status, None
        time.sleep(pause)
        pause = min(1.0, pause * 2)


def http_traffic(
    base_url: str,
    api_key: str,
    events: Sequence[InteractionEvent],
    rate: float,
    batch: int,
    poison_share: float,
    poison: PoisonCounter,
    rec: Recorder,
    stop: threading.Event,
    stop_hard: threading.Event,
) -> None:
    import httpx

    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    pacer, owed, sent = Pacer(rate / batch), 0.0, 0
    with httpx.Client(base_url=base_url, timeout=15.0, headers=headers) as client:
        for start in range(0, len(events), batch):
            if stop.is_set():
                break
            pacer.wait()
            chunk = events[start : start + batch]
            body = orjson.dumps({"events": [e.to_wire() for e in chunk]})
            status, payload = _post(client, body, rec, stop_hard)
            if status == 202 and isinstance(payload, dict):
                bad = {e.get("index") for e in payload.get("errors", []) if isinstance(e, dict)}
                rec.add("http_accepted", [e.event_id for n, e in enumerate(chunk) if n not in bad])
                rec.bump("http_valid_rejected", len(bad))
                if bad:
                    rec.note("http_valid_event_rejected", str(payload["errors"][0]))
            elif 0 < status < 500:
                rec.bump("http_valid_rejected", len(chunk))
                rec.note(f"http_valid_batch_{status}", str(payload))
            else:
                rec.bump("http_gave_up", len(chunk))
            owed += poison_share * len(chunk)
            if owed >= 1.0:
                owed -= 1.0
                kind = HTTP_POISON_KINDS[sent % len(HTTP_POISON_KINDS)]
                sent += 1
                _http_poison(client, poison.next(), kind, rec, stop_hard)


def _http_poison(client: Any, n: int, kind: str, rec: Recorder, stop_hard: threading.Event) -> None:
    rec.bump("http_poison_sent")
    body = http_poison_body(n, int(time.time() * 1000), kind)
    status, payload = _post(client, body, rec, stop_hard)
    accepted = payload.get("accepted") if isinstance(payload, dict) else None
    if 400 <= status < 500 or (status == 202 and accepted == 0):
        rec.bump("http_poison_rejected")
    elif status == 202:
        rec.bump("http_poison_accepted")
        rec.note(f"http_poison_accepted:{kind}", f"{poison_id(n)} answered 202 {payload}")
    else:
        rec.note("http_poison_unanswered", f"{poison_id(n)} ({kind}) last answer {status}")


def recs_traffic(
    base_url: str, users: Sequence[str], rate: float, rec: Recorder, stop: threading.Event, seed: int
) -> None:
    import random

    import httpx

    rng = random.Random(seed)
    pacer = Pacer(rate)
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while not stop.is_set():
            pacer.wait()
            at = rec.now()
            try:
                resp = client.get(f"/v1/users/{rng.choice(users)}/recommendations", params={"k": 10})
                status = resp.status_code
                if status >= 500:
                    rec.note(f"recs_{status}", f"at {at:.1f}s: {resp.text[:300]}")
            except Exception:
                status = 0
            rec.add("recs_answers", [(at, status)])


def guarded(name: str, target: Callable[..., None], rec: Recorder) -> Callable[..., None]:
    """A thread body that records its exception instead of dying silently."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:
            log.exception("event=chaos_thread_failed thread=%s", name)
            rec.add("thread_errors", [f"{name}: {type(exc).__name__}: {exc}"[:1000]])

    return run
