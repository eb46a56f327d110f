"""``streamrec bench retrain``: the product's whole retrain on simulator data at scale, and training alone.

Full run: N simulator events are stored in a scratch database of the dev MongoDB server in the shape the
consumer stores them (``consumer.batch.event_document``) through the product's event store
(``insert_events``, unordered ``insert_many`` of ``LOAD_BATCH`` documents); then ``streamrec retrain
--once --report FILE`` runs in its own process with the production settings (only the scratch database
and a scratch artifact cache are set), so its peak RSS is the retrain's alone. The per-stage wall times
and peaks are the run's own report (``retrain.stages``), not timed here; the kernel's peak RSS of the
child (``wait4``) is reported beside them as a cross-check. The read is reported apart from the stages
after it: it is the dev server's speed.

``--train-only``: the product's trainer (``retrain.model_adapter.ModelTrainer``, production settings) on
N simulator interactions folded into an ``EventTable`` in memory (no MongoDB): its build, train and
index stages as the same ``StageClock`` records them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from core.settings import Settings
from tooling.bench.common import LOG_DIR, machine_info, scratch_stack, write_report
from tooling.devstack.processes import REPO_ROOT
from tooling.producers.simulator import Storefront, StorefrontConfig

# Documents per insert_many while loading (the consumer's own batches are of this order).
LOAD_BATCH = 5000
TARGET_AFTER_READ_S = 300.0
TARGET_PEAK_RSS_MIB = 4096.0
MIB = 1024 * 1024


def shop_for(events: int, users: int | None, items: int | None, days: float, seed: int = 11) -> Storefront:
    """About 30 events a shopper and 60 an item unless given: a catalog large enough to need the ANN
    index above ``model.exact_search_max_items``, as production would."""
    return Storefront(
        StorefrontConfig(
            users=users or max(200, events // 30),
            items=items or max(1000, events // 60),
            events=events,
            seed=seed,
            days=days,
        )
    )


def load_events(settings: Settings, shop: Storefront, console: Console) -> dict[str, Any]:
    """Store the simulation's events as the consumer stores them; the insert time is the server's."""
    from consumer.batch import RawMessage, event_document
    from storage.event_store import MongoEventStore

    store = MongoEventStore.from_settings(settings.mongo)
    topic = settings.kafka.topics.events
    started = time.perf_counter()
    insert_s = 0.0
    stored = 0
    try:
        store.ensure_indexes()
        batch: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        total = shop.config.events

        def flush() -> None:
            nonlocal insert_s, stored
            t0 = time.perf_counter()
            result = store.insert_events(batch)
            insert_s += time.perf_counter() - t0
            stored += len(result.inserted)
            batch.clear()

        with console.status("loading events") as status:
            for offset, event in enumerate(shop.events()):
                msg = RawMessage(topic=topic, partition=0, offset=offset, key=None, value=None)
                batch.append(event_document(msg, event, now))
                if len(batch) >= LOAD_BATCH:
                    flush()
                    if stored % (20 * LOAD_BATCH) == 0:
                        rate = stored / max(insert_s, 1e-9)
                        status.update(f"loading events: {stored:,}/{total:,} ({rate:,.0f}/s into MongoDB)")
            if batch:
                flush()
    finally:
        store.close()
    load_s = time.perf_counter() - started
    return {
        "events_stored": stored,
        "load_s": round(load_s, 1),
        "insert_s": round(insert_s, 1),
        "insert_rate_per_s": round(stored / max(insert_s, 1e-9)),
        # Generating the simulation and building the documents, in this process.
        "generate_s": round(load_s - insert_s, 1),
    }


def run_product_retrain(settings: Settings, work: Path) -> dict[str, Any]:
    """``streamrec retrain --once --report`` in a child process; its report plus the child's peak RSS."""
    report_path = work / "run.json"
    env = {
        **os.environ,
        "STREAMREC_MONGO__URI": settings.mongo.uri.get_secret_value(),
        "STREAMREC_MONGO__DATABASE": settings.mongo.database,
        "STREAMREC_MODEL__ARTIFACT_CACHE_DIR": str(work / "artifacts"),
        "STREAMREC_RETRAIN__METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"retrain-{time.strftime('%Y%m%d%H%M%S')}.log"
    cmd = [sys.executable, "-m", "cli.main", "retrain", "--once", "--report", str(report_path)]
    started = time.perf_counter()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not report_path.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"streamrec retrain --once exited {code}; log {log_path}:\n{tail}")
    run: dict[str, Any] = orjson.loads(report_path.read_bytes())
    run["process_wall_s"] = round(wall, 1)
    # ru_maxrss of the child: KiB on Linux (the whole process, imports included).
    run["process_peak_rss_mib"] = round(usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / MIB, 1)
    run["log"] = str(log_path)
    return run


def _model_config(settings: Settings, version: int | None) -> dict[str, Any]:
    from storage.model_registry_mongo import open_model_registry

    if version is None:
        return {}
    registry = open_model_registry(settings)
    try:
        config = registry.get(version).config
    finally:
        registry.close()
    return {k: config.get(k) for k in ("factors", "reg", "epochs", "exact_search_max_items", "ann")}


def run_retrain_bench(
    events: int, users: int | None, items: int | None, days: float, json_out: Path
) -> dict[str, Any]:
    console = Console()
    shop = shop_for(events, users, items, days)
    with scratch_stack("retrain", console) as settings, tempfile.TemporaryDirectory() as tmp:
        load = load_events(settings, shop, console)
        console.print(
            f"stored {load['events_stored']:,} events in {load['load_s']:.0f}s "
            f"({load['insert_rate_per_s']:,}/s into MongoDB); running streamrec retrain --once"
        )
        run = run_product_retrain(settings, Path(tmp))
        config = _model_config(settings, run.get("version"))
    after_read = float(run["after_read_s"])
    peak = float(run["peak_rss_mib"])
    report: dict[str, Any] = {
        "events": events,
        "users": shop.config.users,
        "items": shop.config.items,
        "days": days,
        "load": load,
        "read_s": run["read_s"],
        "after_read_s": after_read,
        "stages": run["stages"],
        "peak_rss_mib": peak,
        "process_peak_rss_mib": run["process_peak_rss_mib"],
        "rss_per_stage": run["rss_per_stage"],
        "process_wall_s": run["process_wall_s"],
        "outcome": run["outcome"],
        "model": config,
        "metrics": run["metrics"],
        "targets": {"after_read_s": TARGET_AFTER_READ_S, "peak_rss_mib": TARGET_PEAK_RSS_MIB},
        "met": {
            "after_read_s": after_read <= TARGET_AFTER_READ_S,
            "peak_rss_mib": max(peak, float(run["process_peak_rss_mib"])) <= TARGET_PEAK_RSS_MIB,
        },
        "machine": machine_info(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }
    write_report(json_out, report, console, f"retrain at {events:,} events")
    return report


def run_train_only(
    interactions: int, users: int | None, items: int | None, days: float, json_out: Path
) -> dict[str, Any]:
    """The product's trainer alone on ``interactions`` simulator events held in memory."""
    from cli.context import configure_logging, load_settings
    from retrain.event_source import to_event_table
    from retrain.model_adapter import ModelTrainer
    from retrain.stages import StageClock

    console = Console()
    settings = load_settings()
    configure_logging("WARNING")
    shop = shop_for(interactions, users, items, days)
    clock = StageClock()
    fields = ("user_id", "item_id", "event_type", "value", "ts_ms")
    with console.status(f"simulating {interactions:,} interactions"), clock.stage("simulate"):
        table = to_event_table(dict(zip(fields, row, strict=True)) for row in shop.interactions())
    console.print(f"simulated {len(table):,} events in {clock.stages['simulate'].wall_s:.0f}s; training")
    trainer = ModelTrainer(settings.model)
    with console.status("training"):
        model = trainer.fit(table, stages=clock)
    fit_stages = ("build", "train", "index")
    report: dict[str, Any] = {
        "interactions": len(table),
        "users": shop.config.users,
        "items": shop.config.items,
        "trained_users": len(model.artifact.user_ids),
        "trained_items": model.n_items,
        "factors": trainer.config.factors,
        "epochs": trainer.config.epochs,
        "index": model.index_kind,
        "simulate_s": round(clock.wall_s("simulate"), 1),
        "fit_s": round(clock.wall_s(*fit_stages), 1),
        "peak_rss_mib": round(max(clock.stages[s].peak_rss_bytes for s in fit_stages) / MIB, 1),
        "rss_per_stage": clock.rss_per_stage,
        **{"stages": clock.report()["stages"]},
        "machine": machine_info(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }
    write_report(json_out, report, console, f"training alone on {len(table):,} interactions")
    return report
