"""Command `streamrec bench online`: the closed loop, measured. Simulated shoppers with known tastes
get recommendations from an A/B test between a well-trained model and a deliberately degraded one,
click what the click model says, and the bench reads back, from what the product stored, whether
the test finds the better model; then it measures what impression logging costs serving's p99.

The path is the production one: history → Kafka → `streamrec consume` → MongoDB + Redis; both models
trained by retraining's own run (``tooling.bench.online_setup``); `streamrec serve` answering and logging
impressions to Kafka; the experiment created through the admin API; the shoppers' clicks, add-to-carts
and purchases (with ``recommendation_id`` and ``position``) produced to Kafka and attributed by the
consumer; the figures computed from the stored impressions and attributed events.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tooling.app import bench_app
from tooling.bench.common import BenchRun, bench_run, machine_info, produce_records, write_report
from tooling.bench.online_shoppers import (
    CONTROL,
    DEGRADED,
    EXPERIMENT_ID,
    Shopping,
    api_settings,
    create_experiment,
    experiment_report,
    wait_count,
)
from tooling.settings import MissingTool

log = logging.getLogger(__name__)


def figures_from_report(shown: dict[str, Any], *, better: str) -> dict[str, Any]:
    """The bench's headline keys, read off the product's experiment report (``core.experiment_report``,
    as ``GET /v1/admin/experiments/{id}`` serves it): the bench does no statistics of its own.

    ``better`` is the variant that should win (the well-trained model), for ``detected``. ``lift`` is
    treatment CTR / control CTR - 1, and ``clicks`` counts attributed click events per variant; CTR is
    the report's: impressions with at least one attributed click / impressions."""
    rows = {str(v["name"]): v for v in shown["variants"]}
    control = next(name for name, row in rows.items() if row.get("control"))
    treatment = next(name for name in rows if name != control)
    versus = (rows[treatment].get("vs_control") or {}).get("ctr") or {}
    ctr_c, ctr_t = rows[control].get("ctr"), rows[treatment].get("ctr")
    winner = shown.get("winner")
    return {
        "variants": rows,
        "impressions": {name: row["impressions"] for name, row in rows.items()},
        "clicks": {name: row["clicks"] for name, row in rows.items()},
        "ctr": {name: row["ctr"] for name, row in rows.items()},
        "control": control,
        "treatment": treatment,
        "better": better,
        "lift": ctr_t / ctr_c - 1 if ctr_c and ctr_t is not None else None,
        "ctr_diff": versus.get("diff"),
        "ctr_diff_ci95": versus.get("ci95"),
        "p_value": versus.get("p_value"),
        "test": versus.get("test"),
        "winner": winner,
        "detected": winner is not None and winner == better,
        "verdict": shown.get("verdict"),
        "srm_p_value": shown.get("srm_p_value"),
        "ctr_definition": "impressions with at least one attributed click / impressions",
    }


def _nulls(keys: Iterable[str]) -> dict[str, None]:
    return dict.fromkeys(keys)


LATENCY_KEYS = (
    "saturating_rps_off",
    "saturating_rps_on",
    "half_rate_rps",
    "p99_off_ms",
    "p99_on_ms",
    "p99_ratio",
    "p99_ratio_ci95",
)


# ---------------------------------------------------------------- the command


@bench_app.command("online")
def bench_online(
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    shoppers: int = typer.Option(3000, "--shoppers", min=20, help="Simulated shoppers; each asks once."),
    items: int = typer.Option(2000, "--items", min=50, help="Catalog size of the simulated shop."),
    history: int = typer.Option(45_000, "--history-events", min=1000, help="Events both models train on."),
    k: int = typer.Option(10, "--k", min=1, help="Items per recommendations list."),
    seed: int = typer.Option(42, "--seed", min=0, help="The shop's seed (the permutation uses seed + 1)."),
    click_seed: int = typer.Option(7, "--click-seed", min=0, help="The click model's seed."),
    eta: float = typer.Option(1.0, "--eta", min=0.0, help="Position bias: examine(p) = 1/(1+p)^eta."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Shoppers asking at once."),
    settle_s: float = typer.Option(30.0, "--settle-s", min=1.0, help="Give up waiting after this idle time."),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Measure p99 off/on (needs wrk)."),
    latency_duration: int = typer.Option(
        40, "--latency-duration", min=2, help="Seconds per API in each phase (saturating, half rate)."
    ),
    latency_rounds: int = typer.Option(8, "--latency-rounds", min=1, help="Rounds each phase is split in."),
    connections: int = typer.Option(32, "--connections", min=1),
    workers: int = typer.Option(1, "--workers", min=1),
    aa_check: bool = typer.Option(
        False, "--aa-check", help="Latency: both APIs with logging off (the procedure's own noise)."
    ),
    pin: bool = typer.Option(
        True,
        "--pin/--no-pin",
        help="Latency: the APIs on half the cores, generators and servers on the rest.",
    ),
) -> None:
    """A/B test of a good vs a degraded model with simulated shoppers; serving p99 with impressions off/on."""
    from tooling.bench.online_latency import impressions_off, latency_off_on
    from tooling.bench.online_setup import online_storefront, store_history, train_pair
    from tooling.bench.online_shoppers import run_shoppers, wait_for_experiment
    from tooling.bench.serve import start_api
    from tooling.devstack.processes import free_port
    from tooling.producers.simulator import ClickModel, ClickModelConfig

    if latency and shutil.which("wrk") is None:
        raise MissingTool("wrk is not installed (apt-get install wrk); or pass --no-latency")
    console = Console()
    started = time.monotonic()
    durations: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        durations[name] = round(now - since, 3)
        return now

    report: dict[str, Any] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="streamrec-bench-online-"))
    # The run's models get a cache folder of their own: version 1 of this scratch registry is not
    # version 1 of the last run's, and a shared cache would re-download (and warn) for each file.
    cache = log_dir / "artifacts"
    try:
        with bench_run("online", console) as run:
            run.settings = run.settings.model_copy(
                update={"model": run.settings.model.model_copy(update={"artifact_cache_dir": cache})}
            )
            t = time.monotonic()
            shop = online_storefront(shoppers, items, history, seed)
            with console.status(f"{history:,} history events → Kafka → consumer → MongoDB"):
                stored = store_history(run, shop)
            t = lap("history_s", t)
            with console.status("training the good and the degraded model"):
                pair = train_pair(run.settings, shop, permutation_seed=seed + 1)
            t = lap("train_s", t)
            admin_key = secrets.token_urlsafe(24)
            settings = api_settings(run.settings, free_port(), admin_key)
            with console.status("starting the API"):
                api = start_api(settings, log_dir, workers)
            try:
                base_url = f"http://127.0.0.1:{settings.serving.port}"
                create_experiment(base_url, admin_key, pair.good_version, pair.degraded_version)
                poll_s = settings.serving.experiments.poll_s
                probes = wait_for_experiment(base_url, EXPERIMENT_ID, k, timeout_s=10 * poll_s + 30)
                t = lap("api_and_experiment_s", t)
                clicks = ClickModel(shop, ClickModelConfig(eta=eta), seed=click_seed)
                with console.status(f"{shoppers:,} shoppers asking and clicking"):
                    shopping = run_shoppers(base_url, shop.user_ids, clicks, k=k, concurrency=concurrency)
                t = lap("shoppers_s", t)
                report.update(
                    _read_back(
                        run, shopping, probes, settle_s, console, base_url=base_url, admin_key=admin_key
                    )
                )
                t = lap("read_back_s", t)
                if latency:
                    if run.consumer is not None:
                        run.consumer.stop()
                    off = impressions_off(settings, free_port())
                    # A fresh API with logging on, started beside the fresh one with it off: the API
                    # that served the shoppers is an older process (a warmer cache, more garbage), and
                    # two such processes with logging off differed by ~18% in p99 (an A/A run).
                    on = settings.model_copy(
                        update={"serving": settings.serving.model_copy(update={"port": free_port()})}
                    )
                    if aa_check:  # both with logging off: what the procedure reads when nothing differs
                        on = impressions_off(settings, free_port())
                    with console.status("serving p99 with impression logging off and on"):
                        report.update(
                            latency_off_on(
                                on,
                                off,
                                log_dir=log_dir,
                                users=shoppers,
                                duration_s=latency_duration,
                                rounds=latency_rounds,
                                connections=connections,
                                workers=workers,
                                pin=pin,
                                ready=lambda url: wait_for_experiment(
                                    url, EXPERIMENT_ID, k, 10 * poll_s + 30
                                ),
                            )
                        )
                    t = lap("latency_s", t)
                else:
                    report.update(_nulls(LATENCY_KEYS))
            finally:
                api.stop()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    durations["total_s"] = round(time.monotonic() - started, 3)
    report = {
        **report,
        "shoppers": shoppers,
        "items": items,
        "history_events": stored,
        "k": k,
        "latency_aa_check": aa_check,
        "seeds": {"storefront": seed, "permutation": seed + 1, "clicks": click_seed},
        "click_model": {**ClickModelConfig(eta=eta).__dict__},
        "model_versions": {CONTROL: pair.good_version, DEGRADED: pair.degraded_version},
        "training": pair.runs,
        "durations": durations,
        "machine": machine_info(),
    }
    write_report(json_path, report, console, "bench online")


def _read_back(
    run: BenchRun,
    shopping: Shopping,
    probes: int,
    settle_s: float,
    console: Console,
    *,
    base_url: str,
    admin_key: str,
) -> dict[str, Any]:
    """Send the shoppers' events, wait for them, the impressions and the attribution; read the report."""
    from tooling.producers.produce import event_record

    db = run.mongo[run.settings.mongo.database]
    impressions = db["impressions"]
    served = probes + len(shopping.answers)
    events = shopping.events
    ids = [e.event_id for e in events]
    # As in a shop, the clicks go out while the impressions they follow may still be on their way
    # (serving sends impressions in the background, on another topic): attribution must not depend on
    # which the consumer reads first.
    produce_records(run, run.settings.kafka.topics.events, [event_record(e) for e in events])
    with console.status(f"waiting for {served:,} impressions in MongoDB"):
        stored_impressions = wait_count(
            lambda: int(impressions.count_documents({"shadow": {"$ne": True}})), served, settle_s
        )
    with console.status(f"waiting for {len(ids):,} shopper events and their attribution"):
        stored_events = wait_count(lambda: len(run.store.stored_event_ids(ids)), len(ids), settle_s)

        def attributed_now() -> list[dict[str, Any]]:
            return [d for d in run.store.stored_events(ids).values() if d and d.get("attribution")]

        wait_count(lambda: len(attributed_now()), len(ids), min(settle_s, 10.0))
        attributed = attributed_now()
    shown = experiment_report(base_url, admin_key, EXPERIMENT_ID)
    figures = figures_from_report(shown, better=CONTROL)
    sent = Counter(e.event_type.value for e in events)
    attributed_kinds = Counter(str(d.get("event_type")) for d in attributed)
    variant_of = {a.request_id: a.variant for a in shopping.answers}
    credited = [d["attribution"] for d in attributed]
    served_by: dict[str, Counter[str]] = {}
    for answer in shopping.answers:
        served_by.setdefault(str(answer.variant), Counter())[str(answer.model_version)] += 1
    return {
        **figures,
        "answers_served": served,
        "probe_answers": probes,
        "impressions_stored": stored_impressions,
        "impressions_lost": served - stored_impressions,
        "request_errors": len(shopping.errors),
        "request_error_examples": shopping.errors[:5],
        "answers_by_variant_and_model": {v: dict(c) for v, c in served_by.items()},
        "attributed_by": dict(Counter(str(a.get("by")) for a in credited)),
        # Credited to a variant other than the one the answer named: must be 0.
        "attribution_variant_mismatches": sum(
            a.get("variant") != variant_of.get(str(a.get("impression_id"))) for a in credited
        ),
        "clicks_sent": sent["click"],
        "add_to_carts_sent": sent["add_to_cart"],
        "purchases_sent": sent["purchase"],
        "events_sent": len(ids),
        "events_stored": stored_events,
        "attributed_clicks": attributed_kinds["click"],
        "attributed_events": len(attributed),
        "unattributed_clicks": sent["click"] - attributed_kinds["click"],
        "shoppers_s": round(shopping.duration_s, 3),
    }
