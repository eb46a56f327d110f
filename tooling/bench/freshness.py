"""Command `streamrec bench freshness`: consumer and API running; a click for a fresh user is produced
to Kafka and the API is polled until that user's recommendations change."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console

from core.errors import StreamrecError
from tooling.app import bench_app
from tooling.bench.common import scratch_stack
from tooling.bench.serve import serving_settings, start_api, write_report


@bench_app.command("freshness")
def bench_freshness(
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    samples: int = typer.Option(30, "--samples", min=3),
    items: int = typer.Option(2000, "--items", min=10),
) -> None:
    """Seconds from producing a user's event to Kafka until GET recommendations reflects it."""
    import random

    import httpx

    from core.events import InteractionEvent
    from storage.kafka import flush_or_raise, make_producer
    from tooling.bench.serve_model import publish_artifact, synthetic_artifact
    from tooling.devstack.processes import create_topics, free_port, start_consumer

    console = Console()
    with scratch_stack("freshness", console) as base:
        settings = serving_settings(base, free_port())
        synth = synthetic_artifact(items, 100, 32, settings)
        publish_artifact(settings, synth.artifact)
        log_dir = Path(tempfile.mkdtemp(prefix="streamrec-bench-freshness-"))
        create_topics(settings)
        consumer = start_consumer(settings, log_dir=log_dir)
        try:
            with console.status("starting the API"):
                api = start_api(settings, log_dir, 1)
            try:
                producer = make_producer(settings.kafka, **{"linger.ms": 0})
                client = httpx.Client(base_url=f"http://127.0.0.1:{settings.serving.port}", timeout=5.0)
                rng = random.Random(3)
                delays: list[float] = []
                timeouts = 0
                for n in range(samples + 1):  # the first sample waits for the consumer's group join
                    user = f"fresh-{n}-{rng.randrange(10**9)}"
                    url = f"/v1/users/{user}/recommendations"
                    before = client.get(url, params={"k": 10}).json()["items"]
                    event = InteractionEvent.model_validate(
                        {
                            "event_id": f"fr-{user}",
                            "event_type": "click",
                            "user_id": user,
                            "item_id": str(synth.artifact.item_ids[rng.randrange(items)]),
                            "timestamp": int(time.time() * 1000),
                        }
                    )
                    sent = time.perf_counter()
                    producer.produce(settings.kafka.topics.events, value=event.to_json(), key=user.encode())
                    flush_or_raise(producer, 10)
                    limit = 90.0 if n == 0 else 10.0
                    while time.perf_counter() - sent < limit:
                        if client.get(url, params={"k": 10}).json()["items"] != before:
                            if n > 0:
                                delays.append(time.perf_counter() - sent)
                            break
                        time.sleep(0.01)
                    else:
                        if n == 0:
                            raise StreamrecError(f"the consumer applied nothing within 90s; see {log_dir}")
                        timeouts += 1
                client.close()
            finally:
                api.stop()
        finally:
            consumer.stop()
    delays.sort()

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else float("nan")

    report = {
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "max_s": delays[-1] if delays else float("nan"),
        "samples": len(delays),
        "timeouts": timeouts,
        "target_p95_s": 1.0,
    }
    write_report(json_path, report, console, "bench freshness")
