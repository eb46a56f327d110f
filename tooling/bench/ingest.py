"""`streamrec bench ingest` and `streamrec bench crash`: ingestion throughput, freshness and crash safety.

Both run against the dev stack's servers (started here when not running, stopped only if started
here) in a scratch namespace (topics, group, database, key prefix) that is dropped at the end.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from core.errors import StreamrecError
from core.events import EventType, InteractionEvent
from core.settings import ConsumerSettings, Settings
from storage.kafka import make_producer
from tooling.app import bench_app
from tooling.bench.common import (
    STALL_TIMEOUT_S,
    BenchRun,
    bench_run,
    consumer_batches,
    integrity,
    machine_info,
    percentile,
    produce_records,
    redis_vs_rebuild,
    since,
    storefront,
    wait_for,
    warm_up,
    write_report,
)
from tooling.bench.cpu_placement import pin_api
from tooling.bench.ingest_checks import ceiling_figures, effects_check
from tooling.bench.ingest_phases import recovery, run_ceiling, stand_in, wait_applied
from tooling.producers.produce import DeliveryStats, Pacer, event_record, finish, send
from tooling.producers.simulator import Storefront


def freshness(
    run: BenchRun, shop: Storefront, *, rate: float, probes: int, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Produce→visible-in-Redis latency of probe events while a background load of ``rate`` ev/s streams."""
    from storage.realtime_state import RedisRealtimeState

    keys = RedisRealtimeState(run.redis, run.settings.redis.key_prefix).keys
    topic = run.settings.kafka.topics.events
    probe_gap_s = 0.05
    duration_s = probes * probe_gap_s + 3.0
    background = [
        event_record(e) for e in storefront(int(rate * duration_s) + 1, seed=shop.config.seed + 2000).events()
    ]
    stop = threading.Event()
    bg_stats: list[DeliveryStats] = []
    bg_error: list[BaseException] = []

    def load() -> None:
        try:
            bg_stats.append(produce_records(run, topic, background, rate=rate, stop=stop))
        except BaseException as exc:
            bg_error.append(exc)

    thread = threading.Thread(target=load, name="bench-background-load", daemon=True)
    thread.start()
    time.sleep(1.0)  # let the load reach its rate before probing
    producer = make_producer(run.settings.kafka, **{"linger.ms": 0})
    stats = DeliveryStats()
    rng = random.Random(shop.config.seed)
    pending: dict[int, tuple[str, float]] = {}
    latencies: list[float] = []
    missing = 0
    next_probe, sent = time.monotonic(), 0
    tag = run.settings.kafka.group_id
    while sent < probes or pending:
        now = time.monotonic()
        if sent < probes and now >= next_probe:
            user = f"probe-{sent}"
            event = InteractionEvent(
                event_id=f"{tag}-probe-{sent}",
                event_type=EventType.VIEW,
                user_id=user,
                item_id=rng.choice(shop.item_ids),
                timestamp=datetime.now(UTC),
            )
            key, value = event_record(event)
            pending[sent] = (keys.recent(user), time.monotonic())
            send(producer, topic, key, value, stats)
            run.acked_ids.append(event.event_id)
            sent += 1
            next_probe += probe_gap_s
        producer.poll(0)
        if pending:
            pipe = run.redis.pipeline(transaction=False)
            order = list(pending)
            for n in order:
                pipe.exists(pending[n][0])
            seen_at = time.monotonic()
            for n, found in zip(order, pipe.execute(), strict=True):
                if found:
                    latencies.append(seen_at - pending.pop(n)[1])
                elif seen_at - pending[n][1] > timeout_s:
                    pending.pop(n)
                    missing += 1
        time.sleep(0.005)
    finish(producer, stats, "probe events")
    stop.set()
    thread.join(60)
    if bg_error:
        raise bg_error[0]
    bg_sent = bg_stats[0].acked if bg_stats else 0
    bg_rate = bg_stats[0].acked / bg_stats[0].elapsed_s if bg_stats else 0.0
    run.acked_ids += [_event_id(v) for _k, v in background[:bg_sent]]
    measured = latencies + [timeout_s] * missing
    return {
        "freshness_p50_s": percentile(measured, 0.5),
        "freshness_p95_s": percentile(measured, 0.95),
        "freshness_max_s": max(measured) if measured else None,
        "freshness_probes": len(latencies),
        "freshness_missing": missing,
        "freshness_background_events_per_s": round(bg_rate, 1),
    }


def _event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


def with_membership(settings: Settings, instance_id: str, partitions: str) -> Settings:
    """The measured consumer's group mode: explicit partition ownership, static or dynamic membership."""
    if partitions:
        update: dict[str, str | None] = {"partitions": partitions, "instance_id": None}
    else:
        update = {"instance_id": instance_id or None}
    consumer = ConsumerSettings.model_validate({**settings.consumer.model_dump(), **update})
    return settings.model_copy(update={"consumer": consumer})


@bench_app.command("ingest")
def bench_ingest(
    events: int = typer.Option(20_000, "--events", min=1000, help="Events in the timed full-path run."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    freshness_rate: float = typer.Option(1000.0, "--freshness-rate", min=1.0, help="Background ev/s."),
    probes: int = typer.Option(200, "--probes", min=10, help="Freshness probe events."),
    kills: int = typer.Option(3, "--kills", min=0, help="SIGKILLs of the consumer for recovery_s."),
    instance_id: str = typer.Option(
        "bench-ingest-{hostname}",
        "--instance-id",
        help="STREAMREC_CONSUMER__INSTANCE_ID of the measured consumer ('' for dynamic membership).",
    ),
    partitions: str = typer.Option(
        "",
        "--partitions",
        help="STREAMREC_CONSUMER__PARTITIONS, e.g. '0/1': explicit ownership (replaces --instance-id).",
    ),
    seed: int = typer.Option(7, "--seed"),
    pin: bool = typer.Option(
        False,
        "--pin/--no-pin",
        help="Run the measured consumer and each ceiling on half the cores, everything else on the rest "
        "(on the 2-core dev machine this raised the consumer's CPU per event: off by default).",
    ),
) -> None:
    """Producer → Kafka → consumer → MongoDB + Redis vs parse and sink ceilings; CPU, effects, recovery."""
    console = Console()
    with bench_run("ingest", console) as run:
        run.settings = with_membership(run.settings, instance_id, partitions)
        batch_size = run.settings.consumer.batch_size
        with console.status("generating events"):
            shop = storefront(events, seed)
            main_events = list(shop.events())
            records = [event_record(e) for e in main_events]
        with console.status("starting the consumer and warming up"):
            consumer = run.start_consumer()
            warm_up(run, shop)
        # --pin: as in production, where the consumer has its host's cores and the broker and database
        # run elsewhere, the consumer (every thread, librdkafka's included) on half the cores and this
        # process, its producer and the dev servers on the others; each ceiling process runs on the
        # consumer's cores too, so the ratio still compares like with like. Measured on the 2-core dev
        # machine it made things worse (one core left for four servers and the producer: consumer CPU
        # 54 us per event against 37 unpinned, ratio 0.76), so it is not the default.
        placement = pin_api([consumer.pid]) if pin else None
        measured_cpus = placement.api_cpus if placement else None
        if placement is not None:
            run.cleanups.append(placement.restore)  # restoring twice is harmless
        with console.status(f"full path: {events:,} events"):
            cpu_before = consumer.cpu_seconds() or 0.0
            batches_before = consumer_batches(run.settings.consumer.metrics_port)
            started = time.monotonic()
            produced = produce_records(run, run.settings.kafka.topics.events, records)
            produce_s = time.monotonic() - started
            run.acked_ids += [e.event_id for e in main_events]
            done = wait_applied(run, len(run.acked_ids))
            cpu_after = consumer.cpu_seconds() or 0.0
            batches_after = consumer_batches(run.settings.consumer.metrics_port)
        batches = batches_after[0] - batches_before[0]
        sink_s = batches_after[1] - batches_before[1]
        full = events / (done - started)
        console.print(f"full path: {full:,.0f} events/s (produced in {produce_s:.1f}s)")
        # The topic now holds the warm-up and the timed events: each ceiling reads all of them.
        on_topic = len(run.acked_ids)
        # The sink ceiling runs twice around the parse ceiling, each into its own scratch database:
        # the dev MongoDB server's speed drifts, and the faster run is the better upper bound.
        with console.status(f"sink ceiling (run 1): {on_topic:,} records, own process"):
            sinks = [run_ceiling(run, "sink", on_topic, tag="1", cpus=measured_cpus)]
        with console.status(f"parse ceiling: {on_topic:,} records, own process"):
            parse = run_ceiling(run, "parse", on_topic, cpus=measured_cpus)
        with console.status(f"sink ceiling (run 2): {on_topic:,} records, own process"):
            sinks.append(run_ceiling(run, "sink", on_topic, tag="2", cpus=measured_cpus))
        if placement is not None:
            # Freshness and recovery measure the whole stack as it shares the machine.
            placement.restore()
        sink = max(sinks, key=lambda r: float(r["events_per_s"] or 0.0))
        sink = {**sink, "runs_events_per_s": [r["events_per_s"] for r in sinks]}
        figures = ceiling_figures(full, parse["events_per_s"], sink["events_per_s"])
        console.print(
            f"ceilings: parse {parse['events_per_s']:,.0f}, sink {sink['events_per_s']:,.0f} events/s; "
            f"ratio {figures['ratio']}{' (SUSPECT)' if figures['ceiling_suspect'] else ''}"
        )
        with console.status(f"freshness: {probes} probes under ~{freshness_rate:,.0f} ev/s"):
            fresh = freshness(run, shop, rate=freshness_rate, probes=probes)
            run.wait_stored(len(set(run.acked_ids)))
        with console.status(f"recovery: {kills} SIGKILLs of the consumer while events stream"):
            recovered = recovery(run, kills=kills, rate=200.0, seed=seed)
            want = len(set(run.acked_ids))
            if wait_for(lambda: run.stored() >= want, STALL_TIMEOUT_S, poll_s=1.0) is None:
                raise StreamrecError(f"the events streamed during the kills were not all stored ({want})")
        assert run.consumer is not None
        run.consumer.stop()
        with console.status("checking stored ids, Redis against a recount and a rebuild"):
            checks = integrity(run, run.acked_ids)
            checks["duplicate_ids"] = checks.pop("duplicates")
            effects = effects_check(run)
            consistent, diffs = redis_vs_rebuild(run)
        measured = [r for r in recovered if r is not None]
        report: dict[str, Any] = {
            "events": events,
            "events_per_s": round(full, 1),
            "parse_ceiling": parse,
            "sink_ceiling": sink,
            "ceiling_events_per_s": sink["events_per_s"],
            **figures,
            **checks,
            **effects,
            "cpu_us_per_event": round((cpu_after - cpu_before) * 1e6 / events, 1),
            **stand_in(run),
            **fresh,
            "recovery_s": max(measured) if len(measured) == len(recovered) and measured else None,
            "recovery_each_s": recovered,
            "consumer_instance_id": run.settings.consumer.instance_id,
            "consumer_partitions": run.settings.consumer.partitions,
            "redis_consistent": consistent,
            "redis_differences": diffs,
            "produced_acked": produced.acked,
            "produce_s": round(produce_s, 3),
            "consumer_batch_size": batch_size,
            "consumer_batches": batches,
            "consumer_mean_batch_events": round(events / batches, 1) if batches else None,
            "consumer_sink_s": round(sink_s, 2),
            "full_path_s": round(done - started, 2),
            "consumer_batch_wait_s": run.settings.consumer.batch_wait_s,
            # Null: not pinned (--no-pin, or affinity cannot be set here).
            "cpu_placement": placement.as_json() if placement else None,
            "machine": machine_info(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_report(json_path, report, console, "bench ingest")


# ---------------------------------------------------------------- bench crash


@bench_app.command("crash")
def bench_crash(
    events: int = typer.Option(20_000, "--events", min=1000),
    kills: int = typer.Option(3, "--kills", min=1),
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    seed: int = typer.Option(11, "--seed", help="Seeds the events and the kill moments."),
    rate: float | None = typer.Option(None, "--rate", help="Stream rate (default: spread over the kills)."),
    instance_id: str = typer.Option(
        "bench-crash-{hostname}",
        "--instance-id",
        help="STREAMREC_CONSUMER__INSTANCE_ID of the consumer ('' for dynamic membership).",
    ),
    partitions: str = typer.Option(
        "",
        "--partitions",
        help="STREAMREC_CONSUMER__PARTITIONS, e.g. '0/1': explicit ownership (replaces --instance-id).",
    ),
) -> None:
    """SIGKILL the consumer K times while events stream; check loss, duplicates, Redis and recovery."""
    console = Console()
    rng = random.Random(seed)
    stream_rate = rate or events / max(30.0, 14.0 * kills + 10.0)
    with bench_run("crash", console) as run:
        run.settings = with_membership(run.settings, instance_id, partitions)
        with console.status("generating events"):
            shop = storefront(events, seed)
            main_events = list(shop.events())
            records = [event_record(e) for e in main_events]
        with console.status("starting the consumer and warming up"):
            consumer = run.start_consumer()
            warm_up(run, shop)
        base = len(run.acked_ids)
        topic = run.settings.kafka.topics.events
        progress = {"sent": 0}
        producer_result: list[DeliveryStats | BaseException] = []

        def stream() -> None:
            try:
                producer = make_producer(run.settings.kafka)
                stats = DeliveryStats()
                pacer = Pacer(stream_rate)
                for key, value in records:
                    pacer.wait()
                    send(producer, topic, key, value, stats)
                    progress["sent"] = stats.sent
                producer_result.append(finish(producer, stats, "streamed events"))
            except BaseException as exc:
                producer_result.append(exc)

        thread = threading.Thread(target=stream, name="bench-crash-stream", daemon=True)
        thread.start()
        details: list[dict[str, Any]] = []
        for k in range(kills):
            time.sleep(rng.uniform(0.5, 3.0))
            sent_at_kill = progress["sent"]
            consumer.kill()
            console.print(f"kill {k + 1}/{kills}: SIGKILL pid {consumer.pid} after {sent_at_kill:,} sent")
            stored_at_kill = run.stored()
            streaming = thread.is_alive()
            restarted = time.monotonic()
            # Caught up = everything sent by the time the replacement starts is stored.
            target = base + progress["sent"]
            consumer = run.start_consumer(stored_base=stored_at_kill)
            consuming_at = wait_for(lambda: sum(run.consumer_counts().values()) > 0, STALL_TIMEOUT_S)
            caught_up_at = wait_for(lambda t=target: run.stored_now() >= t, STALL_TIMEOUT_S)  # type: ignore[misc]
            details.append(
                {
                    "kill": k + 1,
                    "sent_at_kill": sent_at_kill,
                    "sent_at_restart": target - base,
                    "stored_at_kill": stored_at_kill,
                    "stream_active": streaming,
                    "consuming_again_s": since(restarted, consuming_at),
                    "caught_up_s": since(restarted, caught_up_at),
                }
            )
        thread.join()
        outcome = producer_result[0] if producer_result else StreamrecError("the producer thread vanished")
        if isinstance(outcome, BaseException):
            raise outcome
        run.acked_ids += [e.event_id for e in main_events]
        with console.status("waiting for the consumer to catch up"):
            run.wait_stored(len(run.acked_ids))
        consumer.stop()
        with console.status("checking stored ids, Redis against a recount and a rebuild"):
            checks = integrity(run, run.acked_ids)
            checks["duplicate_ids"] = checks.pop("duplicates")
            effects = effects_check(run)
            consistent, diffs = redis_vs_rebuild(run)
        recovered = [d["consuming_again_s"] for d in details]
        report: dict[str, Any] = {
            "events": events,
            "kills": kills,
            **checks,
            **effects,
            "redis_consistent": consistent,
            "redis_differences": diffs,
            "recovery_s": recovered,
            "recovery_max_s": None if None in recovered else max(recovered),
            "consumer_instance_id": run.settings.consumer.instance_id,
            "consumer_partitions": run.settings.consumer.partitions,
            "caught_up_s": [d["caught_up_s"] for d in details],
            "kill_details": details,
            "stream_events_per_s": round(stream_rate, 1),
            "seed": seed,
            "machine": machine_info(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_report(json_path, report, console, "bench crash")
