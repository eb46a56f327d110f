"""`streamrec bench quality`, `bench train` and `bench retrain`: the model's benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer

from core.errors import StreamrecError
from tooling.app import bench_app

DATASETS = ("ml-latest-small", "ml-100k", "taobao", "amazon-magazine", "csv")


@bench_app.command("quality")
def quality(
    dataset: str = typer.Option(..., help="ml-latest-small | ml-100k | taobao | amazon-magazine | csv"),
    data_dir: Path | None = typer.Option(None, help="Folder of the real data sets (default ../shared/data)."),
    path: Path | None = typer.Option(None, help="The events file for --dataset csv."),
    json_out: Path | None = typer.Option(None, "--json", help="Where to write the JSON report."),
    plot: Path | None = typer.Option(None, help="PNG of Recall@K and NDCG@K for K = 1..50."),
    trials: int = typer.Option(
        12, min=1, help="Validation trials per model (the same seeded Optuna TPE search for every model)."
    ),
    min_item_users: int = typer.Option(
        1, min=1, help="Drop items with fewer distinct users before the split (1 keeps all)."
    ),
    holdout_shift: int = typer.Option(
        0,
        min=0,
        max=3,
        help="A fresh split: drop each user's last test window N times (test figures read before were "
        "on those windows) and split the rest the same way.",
    ),
) -> None:
    """Popularity, EASE, ItemKNN, iALS, BPR and streamrec on one split; equal tuning budgets on
    validation only, bootstrap intervals against the best baseline."""
    import sys

    from tooling.bench.quality import run_quality
    from tooling.offline.datasets import DEFAULT_DATA_DIR

    if dataset not in DATASETS:
        raise StreamrecError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if dataset == "csv" and path is None:
        raise StreamrecError("--dataset csv needs --path FILE (columns user_id,item_id,event_type,timestamp)")
    folder = data_dir or DEFAULT_DATA_DIR
    if dataset != "csv" and not folder.is_dir():
        raise StreamrecError(
            f"data folder {folder} not found: pass --data-dir or put the data sets in ../shared/data"
        )
    command = "streamrec " + " ".join(sys.argv[1:])
    run_quality(
        dataset,
        folder,
        path,
        json_out,
        plot,
        trials=trials,
        min_item_users=min_item_users,
        holdout_shift=holdout_shift,
        command=command,
    )


@bench_app.command("train")
def train(
    interactions: int = typer.Option(1_000_000, min=1000, help="Size of the synthetic interaction set."),
    factors: int = typer.Option(128, min=2, help="Factor count for both streamrec and iALS."),
    dataset: str | None = typer.Option(
        None, help="movielens-1m: the real ML-1M ratings instead of the synthetic set."
    ),
    data_dir: Path | None = typer.Option(None, help="Folder of the real data sets (default ../shared/data)."),
    json_out: Path | None = typer.Option(None, "--json", help="Where to write the JSON report."),
) -> None:
    """Training time of streamrec's model vs implicit's iALS on the same data, same run."""
    from tooling.bench.train import ML_1M, run_train

    if dataset not in (None, ML_1M):
        raise StreamrecError(f"unknown dataset {dataset!r}: bench train knows only {ML_1M}")
    run_train(interactions, json_out, factors=factors, dataset=dataset, data_dir=data_dir)


@bench_app.command("retrain")
def retrain(
    events: int = typer.Option(
        3_000_000, min=1000, help="Simulator events stored in MongoDB and retrained on."
    ),
    users: int | None = typer.Option(None, min=10, help="Simulated shoppers (default events / 30)."),
    items: int | None = typer.Option(None, min=100, help="Simulated catalog (default events / 60)."),
    days: float = typer.Option(7.0, min=0.1, help="Days the simulated events span."),
    train_only: bool = typer.Option(
        False, "--train-only", help="No MongoDB: the product's trainer alone on --interactions events."
    ),
    interactions: int = typer.Option(10_000_000, min=1000, help="With --train-only: simulator events."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
) -> None:
    """The whole retrain (read, split, build, train, index, gate, publish) on simulator data loaded into
    the dev MongoDB, with wall time and peak RSS per stage from the run's own report."""
    from tooling.bench.retrain import run_retrain_bench, run_train_only

    if train_only:
        run_train_only(interactions, users, items, days, json_out)
    else:
        run_retrain_bench(events, users, items, days, json_out)
