"""`streamrec bench cold-start`: the command; the run lives in ``tooling.bench.cold_start_run`` (it imports
torch, which registering the command must not)."""

from __future__ import annotations

from pathlib import Path

import typer

from core.errors import StreamrecError
from tooling.app import bench_app
from tooling.bench.cold_start_data import COLD_DATASETS


@bench_app.command("cold-start")
def cold_start(
    dataset: str = typer.Option(..., help="ml-latest-small | ml-100k | taobao | amazon-magazine"),
    data_dir: Path | None = typer.Option(None, help="Folder of the real data sets (default ../shared/data)."),
    json_out: Path | None = typer.Option(None, "--json", help="Where to write the JSON report."),
    seed: int = typer.Option(42, help="Seed of the training, LightFM, tie-breaking and the bootstrap."),
    holdout_shift: int = typer.Option(
        0,
        min=0,
        max=3,
        help="A fresh split: N times, drop the test period (every held-out pair, every event after the "
        "cutoff) and make the same cold split inside the rest, so no test figure read before can have "
        "steered it.",
    ),
    content_fit: str = typer.Option(
        "",
        help="The hybrid's content fit, as STREAMREC_MODEL__CONTENT_FIT: ridge | ranking | auto "
        "(default: the product's default).",
    ),
    trials: int = typer.Option(
        12,
        min=1,
        max=200,
        help="Seeded search trials per tuned model (the hybrid, LightFM, category popularity).",
    ),
) -> None:
    """Hybrid (streamrec + content map) vs category popularity and LightFM on items with no interactions."""
    from tooling.bench.cold_start_run import run_cold_start
    from tooling.offline.datasets import DEFAULT_DATA_DIR, DatasetError

    if dataset not in COLD_DATASETS:
        raise StreamrecError(f"unknown dataset {dataset!r}: choose one of {', '.join(COLD_DATASETS)}")
    folder = data_dir or DEFAULT_DATA_DIR
    if not folder.is_dir():
        raise StreamrecError(
            f"data folder {folder} not found: pass --data-dir or put the data sets in ../shared/data"
        )
    if content_fit not in ("", "ridge", "ranking", "auto"):
        raise StreamrecError(f"unknown --content-fit {content_fit!r}: choose ridge, ranking or auto")
    try:
        run_cold_start(
            dataset,
            folder,
            json_out,
            seed=seed,
            holdout_shift=holdout_shift,
            content_fit=content_fit or None,
            trials=trials,
        )
    except DatasetError as exc:
        raise StreamrecError(str(exc)) from exc
