"""``streamrec bench quality``: streamrec vs popularity, EASE, ItemKNN, iALS and BPR on one split.

Every model is tuned on a validation split made by the same protocol inside the training data, then
refit on all training data and evaluated once on the test split (see ``model.split``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from model.baselines import EASE, ImplicitFactors, ItemKNN, Popularity, Recommender, implicit_available
from model.evaluation import evaluate
from model.lae import TrainConfig, apply_recency, spectrum, train_lae
from model.split import Split, temporal_split
from storage.datasets import load_dataset

logger = logging.getLogger(__name__)

PROTOCOL = (
    "every event positive; pairs merged keeping the first timestamp; users >= 5 items; per user the last "
    "ceil(20%) items by time are test; unseen test items dropped; full ranking over training items minus "
    "the user's own; tuned on a validation split made the same way inside training, refit, tested once"
)
Params = dict[str, Any]

EASE_GRID: list[Params] = [{"lam": v} for v in (10.0, 50.0, 200.0, 500.0, 2000.0)]
KNN_GRID: list[Params] = [{"k": v} for v in (20, 50, 100, 200)]
IALS_GRID: list[Params] = [
    {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
    for f, r, a in ((64, 1.0, 1.0), (128, 10.0, 1.0), (256, 10.0, 1.0), (256, 30.0, 1.0), (128, 0.1, 10.0))
]
BPR_GRID: list[Params] = [
    {"factors": f, "learning_rate": lr, "regularization": reg, "iterations": 100}
    for f, lr, reg in ((64, 0.01, 0.01), (128, 0.05, 0.01), (128, 0.01, 0.001))
]
LAE_FACTORS = (128, 256, 512, 1024)
LAE_REGS = (50.0, 200.0, 800.0, 3200.0)
LAE_RECENCY = ((0.0, 10.0), (1.0, 10.0), (3.0, 5.0), (3.0, 10.0), (6.0, 10.0), (3.0, 30.0))


def _tune(make: Callable[[Params], Recommender], grid: list[Params], val: Split) -> tuple[Params, float]:
    best: tuple[Params, float] = (grid[0], -1.0)
    for params in grid:
        model = make(params)
        model.fit(val.train)
        ndcg = evaluate(model.score, val.train, val.test)[0]["ndcg@10"]
        logger.info("tune params=%s val_ndcg10=%.4f", params, ndcg)
        if ndcg > best[1]:
            best = (params, ndcg)
    return best


def _lae_scores(
    split: Split, cfg: TrainConfig, sv: tuple[np.ndarray, np.ndarray]
) -> Callable[..., np.ndarray]:
    weights = train_lae(split.train, cfg, precomputed=sv)
    history = apply_recency(split.train, split.recency_ranks(), cfg.recency_boost, cfg.recency_half_life)
    return lambda rows: weights.scores(history[rows])


def tune_streamrec(val: Split, seed: int = 42) -> tuple[TrainConfig, float]:
    """Coordinate search on validation: (factors, reg), then the recency boost, then the popularity bias."""
    torch.manual_seed(seed)
    sv = spectrum(val.train, max(LAE_FACTORS), torch.device("cpu"))

    def score(cfg: TrainConfig) -> float:
        ndcg = evaluate(_lae_scores(val, cfg, sv), val.train, val.test)[0]["ndcg@10"]
        logger.info("tune streamrec=%s val_ndcg10=%.4f", cfg.to_dict(), ndcg)
        return ndcg

    base = TrainConfig(seed=seed)
    candidates = [
        TrainConfig(factors=f, reg=r, diag_correction=dc, seed=seed)
        for dc in (True, False)
        for f in LAE_FACTORS
        for r in LAE_REGS
    ]
    best = max(((score(c), i, c) for i, c in enumerate(candidates)), key=lambda t: (t[0], -t[1]))
    for boost, half in LAE_RECENCY:
        cfg = TrainConfig(**{**best[2].to_dict(), "recency_boost": boost, "recency_half_life": half})  # type: ignore[arg-type]
        if cfg != best[2]:
            best = max(best, (score(cfg), 0, cfg), key=lambda t: t[0])
    for pop in (0.02, 0.1):
        cfg = TrainConfig(**{**best[2].to_dict(), "pop_weight": pop})  # type: ignore[arg-type]
        best = max(best, (score(cfg), 0, cfg), key=lambda t: t[0])
    del base
    return best[2], best[0]


def _baselines() -> list[tuple[str, Callable[[Params], Recommender], list[Params]]]:
    rows: list[tuple[str, Callable[[Params], Recommender], list[Params]]] = [
        ("popularity", lambda p: Popularity(), [{}]),
        ("ease", lambda p: EASE(**p), EASE_GRID),
        ("itemknn", lambda p: ItemKNN(**p), KNN_GRID),
    ]
    if implicit_available():
        rows.append(("ials", lambda p: ImplicitFactors("ials", **p), IALS_GRID))
        rows.append(("bpr", lambda p: ImplicitFactors("bpr", **p), BPR_GRID))
    return rows


def _result(name: str, metrics: dict[str, float], fit_s: float, params: Params) -> dict[str, Any]:
    return {
        "model": name,
        "recall@10": round(metrics["recall@10"], 4),
        "recall@20": round(metrics["recall@20"], 4),
        "ndcg@10": round(metrics["ndcg@10"], 4),
        "hr@10": round(metrics["hr@10"], 4),
        "fit_s": round(fit_s, 2),
        "params": params,
    }


def run_quality(
    dataset: str, data_dir: Path, path: Path | None, json_out: Path | None, plot: Path | None = None
) -> dict[str, Any]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    table = load_dataset(dataset, data_dir=data_dir, path=path)
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    val = split.validation()
    logger.info(
        "bench_split dataset=%s users=%d items=%d train=%d test=%d",
        dataset,
        split.n_users,
        split.n_items,
        split.train.nnz,
        split.test.nnz,
    )
    results: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    notes: list[str] = []
    for name, make, grid in _baselines():
        params, val_ndcg = _tune(make, grid, val)
        model = make(params)
        start = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - start
        metrics, curve = evaluate(model.score, split.train, split.test, with_curves=plot is not None)
        results.append(_result(name, metrics, fit_s, {**params, "val_ndcg@10": round(val_ndcg, 4)}))
        if curve:
            curves[name] = curve
    if not implicit_available():
        notes.append("implicit is not installed: iALS and BPR rows skipped")

    cfg, val_ndcg = tune_streamrec(val)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    scorer = _lae_scores(split, cfg, spectrum(split.train, cfg.factors, torch.device("cpu")))
    fit_s = time.perf_counter() - start
    metrics, curve = evaluate(scorer, split.train, split.test, with_curves=plot is not None)
    results.append(_result("streamrec", metrics, fit_s, {**cfg.to_dict(), "val_ndcg@10": round(val_ndcg, 4)}))
    if curve:
        curves["streamrec"] = curve

    report: dict[str, Any] = {
        "dataset": dataset,
        "protocol": PROTOCOL,
        "split": {
            "users": split.n_users,
            "items": split.n_items,
            "train": int(split.train.nnz),
            "test": int(split.test.nnz),
        },
        "results": results,
        "notes": notes,
    }
    _print(report)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if plot is not None:
        _plot(curves, dataset, plot)
    return report


def _print(report: dict[str, Any]) -> None:
    table = Table(
        title=f"quality: {report['dataset']} ({report['split']['users']} users, "
        f"{report['split']['items']} items)"
    )
    for col in ("model", "recall@10", "recall@20", "ndcg@10", "hr@10", "fit_s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    best = max(r["ndcg@10"] for r in report["results"] if r["model"] != "streamrec")
    for r in report["results"]:
        style = "bold green" if r["model"] == "streamrec" and r["ndcg@10"] >= best else None
        table.add_row(
            r["model"],
            *(f"{r[c]:.4f}" for c in ("recall@10", "recall@20", "ndcg@10", "hr@10")),
            f"{r['fit_s']:.2f}",
            style=style,
        )
    console = Console()
    console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")


def _plot(curves: dict[str, dict[str, list[float]]], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
        ks = range(1, len(curve["recall"]) + 1)
        axes[0].plot(ks, curve["recall"], label=name)
        axes[1].plot(ks, curve["ndcg"], label=name)
    for ax, metric in zip(axes, ("Recall@K", "NDCG@K"), strict=True):
        ax.set_xlabel("K")
        ax.set_title(f"{metric} — {dataset}")
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
