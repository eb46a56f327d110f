"""`streamrec bench export`: users/s of `streamrec export recommendations --all` on simulator data.

The whole product path on a scratch namespace of the dev stack: a simulated shop's catalog and history
go through Kafka and a `streamrec consume` subprocess into MongoDB and Redis, retraining's own run
trains and publishes a model on them, and the export runs exactly what the CLI runs
(``cli.export_run.run_export`` with the serving adapters built from the run's Settings). A second,
resumed run over the finished file shows what a restart costs when nothing is left to do.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console

from core.errors import StreamrecError
from tooling.app import bench_app
from tooling.bench.common import bench_run, machine_info, write_report
from tooling.bench.online_setup import online_storefront, store_history


def train_one(settings: Any) -> int:
    """Retraining's run on everything stored; the published version (made champion if the gate could
    not judge it: the first model has nothing to be judged against)."""
    from retrain.model_adapter import trainer_from_settings
    from retrain.pipeline import RetrainConfig, run_retrain
    from storage.event_store import MongoEventStore
    from storage.model_registry_mongo import open_model_registry

    store = MongoEventStore.from_settings(settings.mongo)
    registry = open_model_registry(settings)
    try:
        trainer = trainer_from_settings(settings.model)
        result = run_retrain(
            store, registry, trainer, RetrainConfig.from_settings(settings.retrain), now=datetime.now(UTC)
        )
        if result.version is None:
            raise StreamrecError(f"training published nothing ({result.outcome})")
        champion = registry.champion()
        if champion is None or champion.version != result.version:
            registry.promote(result.version, "bench export")
        return int(result.version)
    finally:
        registry.close()
        store.close()


@bench_app.command("export")
def bench_export(
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    users: int = typer.Option(1000, "--users", min=10, help="Simulated shoppers (each has a history)."),
    items: int = typer.Option(500, "--items", min=10),
    events: int = typer.Option(5000, "--events", min=100, help="History events through Kafka."),
    k: int = typer.Option(20, "--k", min=1),
    concurrency: int = typer.Option(16, "--concurrency", min=1),
    seed: int = typer.Option(7, "--seed"),
    rounds: int = typer.Option(
        5, "--rounds", min=1, help="Full exports, each to a new file; the median counts."
    ),
) -> None:
    """Export throughput (users/s) through the product's read side, on a scratch dev-stack namespace."""
    from cli.export_run import run_export

    console = Console()
    with bench_run("export", console) as run:
        shop = online_storefront(users, items, events, seed)
        with console.status(f"storing {events} simulated events through Kafka and the consumer"):
            stored = store_history(run, shop)
        with console.status("training the model (retrain's own run)"):
            version = train_one(run.settings)
        folder = Path(tempfile.mkdtemp(prefix="streamrec-bench-export-"))
        runs = []
        for n in range(rounds):
            out = folder / f"recs-{n}.jsonl"
            with console.status(f"round {n + 1}/{rounds}: exporting every user with a stored event"):
                runs.append(
                    asyncio.run(run_export(run.settings, out, k=k, users=None, concurrency=concurrency))
                )
        first = sorted(runs, key=lambda r: r.users_per_s)[len(runs) // 2]
        with console.status("the last export again (resumes: nothing left to do)"):
            again = asyncio.run(run_export(run.settings, out, k=k, users=None, concurrency=concurrency))
        lines = out.read_bytes().splitlines()
        per_user = [orjson.loads(x) for x in lines[:200]]
        short = sum(1 for x in per_user if len(x["items"]) < k)
    if left := sum(r.left_over for r in runs):
        raise StreamrecError(f"{left} users were answered degraded (Redis unreachable)")
    report = {
        "users_simulated": users,
        "items": items,
        "events_stored": stored,
        "model_version": version,
        "k": k,
        "concurrency": concurrency,
        "users_exported": first.exported,
        "lines_in_file": len(lines),
        "rounds": rounds,
        # The median round's figures; every round's users/s below.
        "seconds": round(first.seconds, 3),
        "users_per_s": round(first.users_per_s, 1),
        "rounds_users_per_s": [round(r.users_per_s, 1) for r in runs],
        "resume_exported": again.exported,
        "resume_already_done": again.already_done,
        "resume_seconds": round(again.seconds, 3),
        "sample_lists_shorter_than_k": short,
        "machine": machine_info(),
    }
    write_report(json_path, report, console, "bench export")
