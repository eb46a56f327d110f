"""`streamrec bench quality` and `streamrec bench train`: the model's offline benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer

from core.errors import StreamrecError
from tooling.app import bench_app

DATASETS = ("ml-latest-small", "ml-100k", "taobao", "csv")


@bench_app.command("quality")
def quality(
    dataset: str = typer.Option(..., help="ml-latest-small | ml-100k | taobao | csv"),
    data_dir: Path | None = typer.Option(None, help="Folder of the real data sets (default ../shared/data)."),
    path: Path | None = typer.Option(None, help="The events file for --dataset csv."),
    json_out: Path | None = typer.Option(None, "--json", help="Where to write the JSON report."),
    plot: Path | None = typer.Option(None, help="PNG of Recall@K and NDCG@K for K = 1..50."),
) -> None:
    """Popularity, EASE, ItemKNN, iALS, BPR and streamrec on one split; tuned on validation only."""
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
    run_quality(dataset, folder, path, json_out, plot)


@bench_app.command("train")
def train(
    interactions: int = typer.Option(1_000_000, min=1000, help="Size of the synthetic interaction set."),
    factors: int = typer.Option(128, min=2, help="Factor count for both streamrec and iALS."),
    json_out: Path | None = typer.Option(None, "--json", help="Where to write the JSON report."),
) -> None:
    """Training time of streamrec's model vs implicit's iALS on the same synthetic data, same run."""
    from tooling.bench.train import run_train

    run_train(interactions, json_out, factors=factors)
