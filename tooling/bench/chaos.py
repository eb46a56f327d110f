"""`streamrec bench chaos`: storefront traffic through Kafka and `POST /v1/events`, recommendations at a
fixed rate, while the consumer and the API are SIGKILLed, Redis and MongoDB restarted and poison
records mixed in; afterwards: was anything lost, counted twice, or answered with a 5xx?

Runs on a private dev stack (own Tansu, SecantusDB and redis-server on free ports): it restarts the
servers, so it never touches the shared one. Every wait is bounded; the accounting
(tooling/bench/chaos_plan.py) uses only what the benchmark itself sent and what MongoDB, Redis and the
dead-letter topic hold, not the product's own counters.
"""

from __future__ import annotations

import secrets
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from tooling.app import bench_app
from tooling.bench.chaos_checks import drain, locate_lost, read_topic, redis_check, stored_ids
from tooling.bench.chaos_plan import (
    API_KILL,
    CONSUMER_KILL,
    MONGO_RESTART,
    REDIS_RESTART,
    crash_causes,
    delivery_accounting,
    fault_schedule,
    first_ok_after,
    first_progress_after,
    http_failures,
    passed,
)
from tooling.bench.chaos_run import (
    PoisonCounter,
    Recorder,
    Supervised,
    guarded,
    http_traffic,
    kafka_traffic,
    private_stack,
    progress_monitor,
    recs_traffic,
    restart_server,
    split_streams,
    watchdog,
)
from tooling.bench.common import git_revision
from tooling.devstack.processes import (
    REPO_ROOT,
    create_topics,
    free_port,
    scratch_settings,
    start_consumer,
    start_server,
)


def run_settings(base: Settings, api_port: int, ingest_key: str) -> Settings:
    settings = scratch_settings(base, "chaos")
    serving = settings.serving.model_copy(
        update={
            "host": "127.0.0.1",
            "port": api_port,
            "public_read": True,
            "api_keys_ingest": [SecretStr(ingest_key)],
        }
    )
    return settings.model_copy(update={"serving": serving, "log_level": "INFO"})


def _inject(kind: str, state: Any, consumer: Supervised, api: Supervised, mongo_down_s: float) -> None:
    if kind == CONSUMER_KILL:
        consumer.kill_and_restart()
    elif kind == API_KILL:
        api.kill_and_restart()
    elif kind == REDIS_RESTART:
        restart_server(state, "redis", down_s=1.0)
    elif kind == MONGO_RESTART:
        restart_server(state, "mongo", down_s=mongo_down_s)
    else:
        raise ValueError(f"unknown fault {kind!r}")


def _summary(report: dict[str, Any], console: Console) -> None:
    table = Table(title="bench chaos")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "lost": "0",
        "duplicates": "0",
        "poison_dead_lettered": str(report["poison_sent"]),
        "poison_stored": "0",
        "poison_dead_lettered_twice": "0",
        "http_5xx": "0",
        "http_no_answer": "0",
        "redis_consistent": "True",
        "unscheduled_restarts": "0",
        "http_poison_accepted": "0",
    }
    for key, value in report.items():
        if isinstance(value, dict | list):
            continue
        shown = f"{value:,.3g}" if isinstance(value, float) else str(value)
        ok = targets.get(key)
        style = "" if ok is None else ("green" if shown == ok else "bold red")
        table.add_row(key, f"[{style}]{shown}[/]" if style else shown, ok or "")
    console.print(table)
    faults = Table(title="faults")
    for col in ("kind", "at_s", "restored_s", "recovery_s", "error"):
        faults.add_column(col)
    for f in report["faults"]:
        faults.add_row(*(str(f.get(c, "")) for c in ("kind", "at_s", "restored_s", "recovery_s", "error")))
    console.print(faults)
    for cause, count in report["crash_causes"].items():
        console.print(f"[bold red]unscheduled death x{count}[/]: {cause}")
    for crash in report["unscheduled"][:3]:
        console.print(f"  {crash['kind']} at {crash['at_s']}s (exit {crash['exit_code']}): {crash['log']}")


@dataclass(frozen=True)
class ChaosOptions:
    minutes: float
    kafka_rate: float
    http_rate: float
    http_batch: int
    recs_rate: float
    poison_share: float
    rounds: int | None
    mongo_down_s: float
    seed: int
    # The drain gives up when the consumer has made nothing durable for this long.
    drain_idle_s: float = 60.0


def _publish_catalog(settings: Settings, shop: Any) -> None:
    from storage.kafka import make_producer
    from tooling.producers.produce import DeliveryStats, finish, item_record, send

    producer = make_producer(settings.kafka)
    stats = DeliveryStats()
    for key, value in (item_record(u) for u in shop.catalog()):
        send(producer, settings.kafka.topics.items, key, value, stats)
    finish(producer, stats, "catalog records")


def _traffic_threads(
    settings: Settings, opts: ChaosOptions, shop: Any, rec: Recorder, stops: tuple[threading.Event, ...]
) -> list[threading.Thread]:
    stop, stop_hard = stops
    total = int((opts.kafka_rate + opts.http_rate) * opts.minutes * 60.0 * 1.05) + 100
    kafka_events, http_events = split_streams(list(shop.events())[:total], opts.kafka_rate, opts.http_rate)
    api_url = f"http://127.0.0.1:{settings.serving.port}"
    key = settings.serving.api_keys_ingest[0].get_secret_value()
    poison = PoisonCounter()
    kafka_args = (settings, kafka_events, opts.kafka_rate, opts.poison_share, poison, rec, stop)
    http_args = (
        api_url, key, http_events, opts.http_rate, opts.http_batch, opts.poison_share, poison, rec, stop,
        stop_hard,
    )  # fmt: skip
    recs_args = (api_url, shop.user_ids, opts.recs_rate, rec, stop, opts.seed)
    return [
        threading.Thread(target=guarded(name, target, rec), args=args, name=f"chaos-{name}", daemon=True)
        for name, target, args in (
            ("kafka", kafka_traffic, kafka_args),
            ("http", http_traffic, http_args),
            ("recs", recs_traffic, recs_args),
        )
    ]


def _run_faults(
    schedule: list[Any], state: Any, consumer: Supervised, api: Supervised, rec: Recorder, opts: ChaosOptions,
    console: Console,
) -> list[dict[str, Any]]:  # fmt: skip
    faults: list[dict[str, Any]] = []
    for planned in schedule:
        while rec.now() < planned.at_s:
            time.sleep(0.1)
        entry: dict[str, Any] = {"kind": planned.kind, "at_s": round(rec.now(), 3)}
        try:
            _inject(planned.kind, state, consumer, api, opts.mongo_down_s)
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
        entry["restored_s"] = round(rec.now(), 3)
        faults.append(entry)
        console.print(f"{entry['at_s']:7.1f}s {planned.kind} (restored at {entry['restored_s']:.1f}s)")
    while rec.now() < opts.minutes * 60.0:
        time.sleep(0.2)
    return faults


def _recoveries(faults: list[dict[str, Any]], rec: Recorder) -> list[tuple[float, float | None]]:
    """Fill in each fault's recovery_s; returns the windows when the API process was down."""
    windows: list[tuple[float, float | None]] = []
    for entry in faults:
        at, restored = entry["at_s"], entry["restored_s"]
        if entry["kind"] == API_KILL:
            back = first_ok_after(rec.recs_answers, restored)
            # Requests started just before the kill may fail with it: the window opens a little early.
            windows.append((at - 0.5, back))
        else:
            back = first_progress_after(rec.progress, restored)
        entry["recovery_s"] = None if back is None else round(back - at, 3)
    for crash in rec.unscheduled:
        if crash["kind"] == "api_died":
            windows.append((crash["at_s"] - 5.0, first_ok_after(rec.recs_answers, crash["at_s"])))
    return windows


def _run(
    settings: Settings, state: Any, opts: ChaosOptions, console: Console, log_dir: Path
) -> dict[str, Any]:
    from tooling.bench.common import storefront

    create_topics(settings)
    duration_s = opts.minutes * 60.0
    schedule = fault_schedule(duration_s, opts.rounds)
    total = int((opts.kafka_rate + opts.http_rate) * duration_s * 1.05) + 100
    with console.status(f"generating {total:,} storefront events"):
        shop = storefront(total, opts.seed)
    revision = git_revision()  # what is measured: the tree as the run starts
    rec = Recorder()
    consumer = Supervised("consumer", lambda: start_consumer(settings, log_dir=log_dir), rec)
    api = Supervised("api", lambda: start_server(settings, log_dir=log_dir, name="api"), rec)
    stop, stop_hard, stop_watch = threading.Event(), threading.Event(), threading.Event()
    try:
        with console.status("starting the consumer and the API, publishing the catalog"):
            consumer.start()
            api.start()
            _publish_catalog(settings, shop)
        threads = _traffic_threads(settings, opts, shop, rec, (stop, stop_hard))
        watchers = [
            threading.Thread(target=watchdog, args=([consumer, api], stop_watch), daemon=True),
            threading.Thread(
                target=progress_monitor,
                args=(consumer, settings.consumer.metrics_port, rec, stop_watch),
                daemon=True,
            ),
        ]
        rec.t0 = time.monotonic()
        for t in (*watchers, *threads):
            t.start()
        console.print(f"traffic for {opts.minutes:g} min; faults at {[f.at_s for f in schedule]} s")
        faults = _run_faults(schedule, state, consumer, api, rec, opts, console)
        stop.set()
        for t in threads:
            t.join(JOIN_S)
        stop_hard.set()
        sent_for_s = rec.now()
        drained = drain(
            settings, rec, len(set(rec.kafka_acked) | set(rec.http_accepted)), console, opts.drain_idle_s
        )
    finally:
        stop.set()
        stop_hard.set()
        stop_watch.set()
        sigterm_at = time.monotonic()
        consumer_exit = consumer.stop()
        consumer_stop_s = round(time.monotonic() - sigterm_at, 2)
        api.stop()
    with console.status("reading the dead-letter topic, MongoDB's ids, and Redis against a rebuild"):
        dead = read_topic(settings, settings.kafka.topics.dead_letter)
        accounting = delivery_accounting(
            valid_sent=[*rec.kafka_acked, *rec.http_accepted],
            stored_ids=stored_ids(settings),
            dead_letters=dead,
            poison_sent=rec.poison_acked,
        )
        redis = redis_check(settings)
        lost_where = locate_lost(settings, accounting["lost_ids"]) if accounting["lost"] else []
        via_http = set(rec.http_accepted)
        for entry in lost_where:
            entry["sent_via"] = "http" if entry["event_id"] in via_http else "kafka"
    windows = _recoveries(faults, rec)
    http = http_failures([*rec.recs_answers, *rec.ingest_answers], windows)
    codes = Counter(str(status) for _t, status in [*rec.recs_answers, *rec.ingest_answers])
    report: dict[str, Any] = {
        "command": " ".join(["streamrec", *sys.argv[1:]]),
        "git_revision": revision,
        "minutes": opts.minutes,
        **{k: accounting[k] for k in ("events_sent", "stored", "dead_lettered", "lost")},
        "duplicates": redis["duplicates"],
        "poison_sent": accounting["poison_sent"],
        "poison_dead_lettered": accounting["poison_dead_lettered"],
        "http_5xx": http["http_5xx"],
        "faults": faults,
        "redis_consistent": redis["redis_consistent"],
        "passed": False,
        "api_down_windows": [[round(a, 3), None if b is None else round(b, 3)] for a, b in windows],
        "http_no_answer": http["http_no_answer"],
        "http_5xx_in_windows": http["http_5xx_in_windows"],
        "http_status_counts": dict(sorted(codes.items())),
        "anomalies": rec.notes,
        "crash_causes": crash_causes(rec.unscheduled),
        "poison_stored": accounting["poison_stored"],
        "poison_dead_lettered_twice": accounting["poison_dead_lettered_twice"],
        "poison_missing_sample": accounting["poison_missing_sample"],
        "poison_dead_lettered_twice_sample": accounting["poison_dead_lettered_twice_sample"],
        "http_poison_sent": rec.http_poison_sent,
        "http_poison_rejected": rec.http_poison_rejected,
        "http_poison_accepted": rec.http_poison_accepted,
        "valid_dead_lettered": accounting["valid_dead_lettered"],
        "lost_sample": accounting["lost_sample"],
        "lost_where": lost_where,
        "kafka_events_acked": len(rec.kafka_acked),
        "kafka_send_failed": rec.kafka_failed,
        "http_events_accepted": len(rec.http_accepted),
        "http_valid_rejected": rec.http_valid_rejected,
        "http_events_given_up": rec.http_gave_up,
        "recs_requests": len(rec.recs_answers),
        "redis_missing": redis["redis_missing"],
        "redis_differing": redis["redis_differing"],
        "redis_by_section": redis["redis_by_section"],
        "redis_differences": redis["redis_differences"],
        "unscheduled_restarts": len(rec.unscheduled),
        "unscheduled": rec.unscheduled,
        "thread_errors": rec.thread_errors,
        **drained,
        "consumer_exit_code": consumer_exit,
        "consumer_sigterm_s": consumer_stop_s,
        "traffic_s": round(sent_for_s, 1),
        "rates": {
            "kafka_events_per_s": opts.kafka_rate,
            "http_events_per_s": opts.http_rate,
            "http_batch": opts.http_batch,
            "recs_per_s": opts.recs_rate,
            "poison_share": opts.poison_share,
            "achieved_events_per_s": round(accounting["events_sent"] / max(sent_for_s, 1e-9), 1),
            "achieved_recs_per_s": round(len(rec.recs_answers) / max(sent_for_s, 1e-9), 1),
        },
        "mongo_down_s": opts.mongo_down_s,
        "seed": opts.seed,
        "logs": [str(p) for p in (*consumer.logs, *api.logs)],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report["passed"] = passed(report) and not rec.thread_errors
    return report


JOIN_S = 120.0


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


@bench_app.command("chaos")
def bench_chaos(
    minutes: float = typer.Option(5.0, "--minutes", min=0.25, help="Minutes of traffic under faults."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    kafka_rate: float = typer.Option(100.0, "--kafka-rate", min=1.0, help="Events/s produced to Kafka."),
    http_rate: float = typer.Option(50.0, "--http-rate", min=1.0, help="Events/s via POST /v1/events."),
    http_batch: int = typer.Option(10, "--http-batch", min=1, max=500, help="Events per POST."),
    recs_rate: float = typer.Option(20.0, "--recs-rate", min=1.0, help="Recommendation requests/s."),
    poison_share: float = typer.Option(0.01, "--poison-share", min=0.0, max=0.5, help="Share of poison."),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Times each fault is injected."),
    mongo_down_s: float = typer.Option(5.0, "--mongo-down-s", min=0.0, help="Seconds MongoDB stays down."),
    seed: int = typer.Option(17, "--seed", help="Seeds the storefront and the users asked about."),
    drain_idle_s: float = typer.Option(
        60.0, "--drain-idle-s", min=1.0, help="Stop draining after the consumer is idle this long."
    ),
) -> None:
    """Storefront traffic via Kafka and HTTP while the consumer and API are SIGKILLed and Redis and
    MongoDB restarted, with poison mixed in; then checks nothing was lost, doubled or answered 5xx."""
    import orjson

    from tooling.bench.common import machine_info

    opts = ChaosOptions(
        minutes,
        kafka_rate,
        http_rate,
        http_batch,
        recs_rate,
        poison_share,
        rounds,
        mongo_down_s,
        seed,
        drain_idle_s,
    )
    console = Console()
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the servers started here are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    log_dir = REPO_ROOT / ".devstack" / "bench-logs" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}"
    with console.status("starting a private dev stack (Tansu, SecantusDB, redis-server)"):
        stack = private_stack()
        base, state = stack.__enter__()
    # The stack is left by hand (not a with block) so its start-up sits inside the spinner above.
    try:
        settings = run_settings(base, free_port(), secrets.token_hex(16))
        report = _run(settings, state, opts, console, log_dir)
        report["machine"] = machine_info()
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise
    stack.__exit__(None, None, None)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    _summary(report, console)
    console.print(f"wrote {json_path}; child logs under {log_dir}")
    if not report["passed"]:
        console.print("[bold red]FAILED[/]: a target was missed (red rows, faults without recovery)")
