"""Command `streamrec bench freshness`: how long until a shopper's event shows in their recommendations,
with the consumer under background traffic.

On a scratch namespace of the dev stack: a model (``serve_model.synthetic_artifact`` at the product's
``model.factors``) is published, `streamrec consume` and `streamrec serve` run with the product's
settings, and a separate process (``background_load``) produces other shoppers' events at ``--rate``.
Each sample produces one click of a fresh shopper to Kafka and polls GET recommendations until the
answer is ranked from that click (``freshness_stats.reflects``); a sample that does not get there
within ``--timeout`` is censored at the timeout and stays in the percentiles.
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from core.errors import StreamrecError
from tooling.app import bench_app
from tooling.bench.common import consumer_outcomes, machine_info, scratch_stack, write_report
from tooling.bench.freshness_stats import freshness_figures, reflects
from tooling.bench.serve import serving_settings, start_api

TARGET_P95_S = 1.0
POLL_S = 0.01  # the measurement's resolution, besides one GET's latency
# A random pause before each sample: starting right after the previous answer would phase-lock the
# samples to the consumer's batch cycle (its batch just ended) and measure one point of it only.
MAX_GAP_S = 0.1
WARMUP_TIMEOUT_S = 90.0  # the first event also waits for the consumer's group join
LOAD_SETTLE_S = 2.0  # the consumer has been under the load this long before the first sample
SETTLE_MAX_S = 30.0


@dataclass
class Sampler:
    """Produces one fresh shopper's click at a time and times it until the API's answer reflects it."""

    client: Any  # httpx.Client on the API
    producer: Any  # confluent_kafka.Producer
    topic: str
    item_ids: list[str]
    rng: random.Random
    errors: list[str] = field(default_factory=list)
    count: int = 0

    def items(self, user: str) -> list[dict[str, Any]]:
        resp = self.client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
        if resp.status_code != 200:
            raise StreamrecError(f"GET recommendations answered {resp.status_code}: {resp.text[:300]}")
        return list(resp.json()["items"])

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def sample(self, timeout_s: float) -> float | None:
        """Seconds from produce until an answer reflecting the click came back; None past ``timeout_s``."""
        from core.events import InteractionEvent
        from storage.kafka import flush_or_raise

        self.count += 1
        user = f"fresh-{self.count}-{self.rng.randrange(10**9)}"
        item = self.item_ids[self.rng.randrange(len(self.item_ids))]
        if reflects(self.items(user), item):  # also puts a popularity answer in the result cache
            raise StreamrecError(f"{user} is not a fresh shopper: their first answer is not popularity")
        event = InteractionEvent.model_validate(
            {
                "event_id": f"fr-{user}",
                "event_type": "click",
                "user_id": user,
                "item_id": item,
                "timestamp": int(time.time() * 1000),
            }
        )
        sent = time.perf_counter()
        self.producer.produce(
            self.topic, value=event.to_json(), key=user.encode(), on_delivery=self._delivered
        )
        delay: float | None = None
        while True:
            self.producer.poll(0)
            seen = reflects(self.items(user), item)
            elapsed = time.perf_counter() - sent
            if seen or elapsed >= timeout_s:
                # An answer that came back after the timeout is censored like one that never did.
                delay = elapsed if seen and elapsed <= timeout_s else None
                break
            time.sleep(POLL_S)
        flush_or_raise(self.producer, 10)
        if self.errors:
            raise StreamrecError(f"Kafka refused a probe event: {self.errors[0]}")
        return delay


def consumed(port: int) -> float:
    """Interaction events the consumer has made durable, whatever their outcome (its own metrics).

    Not the impressions it also consumes: every GET the sampler makes logs one.
    """
    return sum(consumer_outcomes(port, exclude=("item", "impression")).values())


def settle(port: int, rate: float) -> float:
    """Wait until the consumer has been under the load for ``LOAD_SETTLE_S`` and is less than a second
    of it behind; returns the wait.

    Sampling from the load's first instant would time the consumer's switch from idle to busy, not
    the steady state under load. A consumer that never gets within a second of the load is not
    waited for beyond ``SETTLE_MAX_S``: the samples then show it.
    """
    if rate <= 0:
        return 0.0
    start, base = time.monotonic(), consumed(port)
    while True:
        elapsed = time.monotonic() - start
        behind = rate * elapsed - (consumed(port) - base)
        if (elapsed >= LOAD_SETTLE_S and behind < rate) or elapsed >= SETTLE_MAX_S:
            return elapsed
        time.sleep(0.1)


@bench_app.command("freshness")
def bench_freshness(
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    samples: int = typer.Option(200, "--samples", min=3, help="Timed events (timeouts included)."),
    items: int = typer.Option(2000, "--items", min=10, help="Items in the published model."),
    rate: float = typer.Option(
        1000.0, "--rate", min=0.0, help="Background events/s of other shoppers (0: none)."
    ),
    timeout_s: float = typer.Option(
        10.0, "--timeout", min=0.1, help="Seconds after which a sample counts as censored at this value."
    ),
) -> None:
    """Seconds from producing a shopper's event to Kafka until GET recommendations reflects it, under
    background traffic; timed-out samples count at the timeout."""
    import httpx

    from storage.kafka import make_producer
    from tooling.bench.background_load import BackgroundLoad
    from tooling.bench.serve_model import publish_artifact, synthetic_artifact
    from tooling.devstack.processes import create_topics, free_port, start_consumer

    console = Console()
    measured: list[float] = []
    censored = 0
    with scratch_stack("freshness", console) as base, ExitStack() as stack:
        settings = serving_settings(base, free_port())
        factors = settings.model.factors
        with console.status(f"publishing a {items:,}-item model at {factors} factors"):
            synth = synthetic_artifact(items, 100, factors, settings)
            publish_artifact(settings, synth.artifact)
        item_ids = [str(i) for i in synth.artifact.item_ids]
        log_dir = Path(tempfile.mkdtemp(prefix="streamrec-bench-freshness-"))
        create_topics(settings)
        consumer = start_consumer(settings, log_dir=log_dir)
        stack.callback(consumer.stop)
        with console.status("starting the API"):
            api = start_api(settings, log_dir, 1)
        stack.callback(api.stop)
        client = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{settings.serving.port}", timeout=timeout_s + 5.0)
        )
        producer = make_producer(settings.kafka, **{"linger.ms": 0})
        sampler = Sampler(client, producer, settings.kafka.topics.events, item_ids, random.Random(3))
        with console.status("waiting for the consumer to apply a first event"):
            if sampler.sample(WARMUP_TIMEOUT_S) is None:
                raise StreamrecError(
                    f"the consumer applied nothing within {WARMUP_TIMEOUT_S:.0f}s; see {log_dir}"
                )

        load: BackgroundLoad | None = None
        if rate > 0:
            # Bounded by the longest the sampling can take, so a crashed parent leaves no load behind.
            max_s = SETTLE_MAX_S + samples * (timeout_s + MAX_GAP_S + 1.0) + 60.0
            load = BackgroundLoad(settings, rate=rate, item_ids=item_ids, log_dir=log_dir, max_s=max_s)
            stack.callback(load.kill)
            load.wait_ready()
        port = settings.consumer.metrics_port
        settle_s = settle(port, rate)
        load_before = os.getloadavg()
        consumed_before, started = consumed(port), time.monotonic()
        with console.status(f"{samples} samples under ~{rate:,.0f} background events/s") as status:
            for n in range(samples):
                time.sleep(sampler.rng.uniform(0.0, MAX_GAP_S))
                delay = sampler.sample(timeout_s)
                if delay is None:
                    censored += 1
                else:
                    measured.append(delay)
                for proc in (consumer, api):
                    if not proc.alive():
                        raise StreamrecError(f"{proc.name} exited during the run; log {proc.log_path}")
                if load is not None and not load.alive():
                    raise StreamrecError(f"the background load exited early; log {load.log_path}")
                status.update(f"{n + 1}/{samples} samples ({censored} censored)")
        sampling_s = time.monotonic() - started
        consumer_eps = (consumed(port) - consumed_before) / sampling_s
        load_after = os.getloadavg()
        background = load.stop() if load is not None else {"acked": 0, "elapsed_s": 0.0, "events_per_s": 0.0}
        # Everything produced was consumed? The time it takes says whether the consumer kept up.
        want = 1 + samples + background["acked"]
        caught_up = time.monotonic()
        while consumed(port) < want and time.monotonic() - caught_up < 60.0:
            time.sleep(0.1)
        behind = max(0, want - int(consumed(port)))
        caught_up_s = time.monotonic() - caught_up
        producer.flush(10)
        del producer, sampler  # free the Kafka client before the dev stack may be stopped
        gc.collect()

    figures = freshness_figures(measured, censored, timeout_s, TARGET_P95_S)
    if rate > 0 and background["events_per_s"] < 0.95 * rate:
        console.print(
            f"[yellow]the background load reached {background['events_per_s']:,.0f} of {rate:,.0f} events/s"
        )
    report: dict[str, Any] = {
        **figures,
        "background_eps": background["events_per_s"],
        "background_rate_asked": rate,
        "background_events": background["acked"],
        "background_s": background["elapsed_s"],
        "consumer_eps": round(consumer_eps, 1),
        "consumer_caught_up_s": round(caught_up_s, 2),
        "consumer_behind_events": behind,
        "settle_s": round(settle_s, 2),
        "sampling_s": round(sampling_s, 2),
        "poll_interval_s": POLL_S,
        "items": items,
        "factors": factors,
        "consumer_batch_wait_s": settings.consumer.batch_wait_s,
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
        "machine": machine_info(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_report(json_path, report, console, "bench freshness")
