"""``streamrec bench quality``: streamrec vs popularity, EASE, ItemKNN, iALS and BPR on one split.

Every model is tuned on the mean of two validation splits made by the same protocol inside the training
data (and inside that), then refit on all training data and evaluated once on the test split (see
``tooling.offline.split``). streamrec may choose to weight its input by event strength
(``tooling.offline.input_weights``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from rich.table import Table

from model.errors import EmptyDataError
from model.lae import TrainConfig, spectrum, train_lae
from model.trained_model import TrainedModel
from tooling.offline.baselines import EASE, Baseline, ImplicitFactors, ItemKNN, Popularity, implicit_available
from tooling.offline.datasets import load_dataset
from tooling.offline.evaluation import evaluate
from tooling.offline.input_weights import INPUT_MODES, event_strengths, input_matrix, pair_strengths
from tooling.offline.split import Split, temporal_split

logger = logging.getLogger(__name__)

PROTOCOL = (
    "every event positive; pairs merged keeping the first timestamp; users >= 5 items; per user the last "
    "ceil(20%) items by time are test; unseen test items dropped; full ranking over training items minus "
    "the user's own; every model tuned on the mean NDCG@10 of 2 validation folds (the same split made "
    "inside training, and again inside that), refit on all training, tested once; streamrec's input matrix "
    "may weight pairs by event strength seen up to each user's training cutoff, targets stay binary"
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
LAE_FACTORS = (128, 256, 512, 1024)  # 1024 >= min(users, items) on every bundled data set: full rank
LAE_REGS = (50.0, 200.0, 800.0, 3200.0)
LAE_RECENCY = ((0.0, 10.0), (1.0, 10.0), (3.0, 5.0), (3.0, 10.0), (6.0, 10.0), (3.0, 30.0))
LAE_POP = (0.02, 0.1)
VALIDATION_FOLDS = 2


@dataclass
class Fold:
    """One validation split plus what every streamrec candidate on it shares (computed once)."""

    split: Split
    strength: sp.csr_matrix | None  # summed event strengths of the training pairs (None: binary only)
    ranks: sp.csr_matrix = field(init=False)
    _inputs: dict[str, sp.csr_matrix] = field(default_factory=dict)
    _spectra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ranks = self.split.recency_ranks()

    def inputs(self, mode: str) -> sp.csr_matrix:
        if mode not in self._inputs:
            self._inputs[mode] = input_matrix(self.split, self.strength, mode)
        return self._inputs[mode]

    def spectrum(self, mode: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if mode not in self._spectra:
            torch.manual_seed(seed)
            self._spectra[mode] = spectrum(self.inputs(mode), max(LAE_FACTORS), torch.device("cpu"))
        return self._spectra[mode]


def validation_folds(split: Split, n_folds: int = VALIDATION_FOLDS) -> list[Split]:
    """The protocol applied inside training, then again inside that training (one step earlier), ...

    Averaging over folds (different time windows) makes model selection less noisy where a validation
    test set holds few hits (Taobao: ~20)."""
    folds = [split.validation()]
    while len(folds) < n_folds:
        try:
            nxt = folds[-1].validation()
        except EmptyDataError:
            break
        if nxt.test.nnz == 0:
            break
        folds.append(nxt)
    return folds


def tune(make: Callable[[Params], Baseline], grid: list[Params], folds: list[Split]) -> tuple[Params, float]:
    best: tuple[Params, float] = (grid[0], -1.0)
    for params in grid:
        scores = []
        for val in folds:
            model = make(params)
            model.fit(val.train)
            scores.append(evaluate(model.score, val.train, val.test)[0]["ndcg@10"])
        ndcg = float(np.mean(scores))
        logger.info("tune params=%s val_ndcg10=%.4f folds=%s", params, ndcg, [round(x, 4) for x in scores])
        if ndcg > best[1]:
            best = (params, ndcg)
    return best


def lae_scores(
    split: Split,
    inputs: sp.csr_matrix,
    ranks: sp.csr_matrix,
    cfg: TrainConfig,
    sv: tuple[np.ndarray, np.ndarray],
) -> Callable[..., np.ndarray]:
    model = TrainedModel.from_weights(train_lae(inputs, cfg, precomputed=sv), cfg, split.item_ids)
    return lambda rows: model.scores(inputs[rows], ranks[rows])


def tune_streamrec(folds: list[Fold], seed: int = 42) -> tuple[TrainConfig, str, float]:
    """Coordinate search on the mean validation NDCG@10 over the folds: (factors, reg, diag correction)
    on binary input, then the input weighting with its own reg, a finer reg step, the recency boost, and
    the popularity bias. Ties keep the earlier (simpler) candidate."""
    cache: dict[tuple[TrainConfig, str], float] = {}

    def score(cfg: TrainConfig, mode: str) -> float:
        if (cfg, mode) not in cache:
            vals = [
                evaluate(
                    lae_scores(f.split, f.inputs(mode), f.ranks, cfg, f.spectrum(mode, seed)),
                    f.split.train,
                    f.split.test,
                )[0]["ndcg@10"]
                for f in folds
            ]
            cache[(cfg, mode)] = float(np.mean(vals))
            logger.info(
                "tune streamrec=%s input=%s val_ndcg10=%.4f folds=%s",
                cfg.to_dict(),
                mode,
                cache[(cfg, mode)],
                [round(v, 4) for v in vals],
            )
        return cache[(cfg, mode)]

    def with_(cfg: TrainConfig, **changes: Any) -> TrainConfig:
        return TrainConfig(**{**cfg.to_dict(), **changes})  # type: ignore[arg-type]

    best_cfg, best_mode, best_val = TrainConfig(seed=seed), "binary", -1.0

    def consider(cfg: TrainConfig, mode: str) -> None:
        nonlocal best_cfg, best_mode, best_val
        val = score(cfg, mode)
        if val > best_val:
            best_cfg, best_mode, best_val = cfg, mode, val

    for dc in (True, False):
        for f in LAE_FACTORS:
            for r in LAE_REGS:
                consider(TrainConfig(factors=f, reg=r, diag_correction=dc, seed=seed), "binary")
    weighted = [m for m in INPUT_MODES if m != "binary"] if folds[0].strength is not None else []
    base = best_cfg
    for mode in weighted:
        for r in LAE_REGS:
            consider(with_(base, reg=r), mode)
    for factor in (0.5, 2.0):
        consider(with_(best_cfg, reg=best_cfg.reg * factor), best_mode)
    base = best_cfg
    for boost, half in LAE_RECENCY:
        consider(with_(base, recency_boost=boost, recency_half_life=half), best_mode)
    base = best_cfg
    for pop in LAE_POP:
        consider(with_(base, pop_weight=pop), best_mode)
    return best_cfg, best_mode, best_val


def _baselines() -> list[tuple[str, Callable[[Params], Baseline], list[Params]]]:
    rows: list[tuple[str, Callable[[Params], Baseline], list[Params]]] = [
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
    folds = validation_folds(split)
    # Engagement strength by event type and repeats; a rating's value is not used (every rating is a
    # positive in the protocol). Worth tuning only when the training pairs' strengths differ (judged on
    # training events alone); otherwise every input mode is the binary matrix.
    strengths = event_strengths(table.event_type)
    train_strength = pair_strengths(split, table.user_id, table.item_id, table.ts_ms, strengths)
    weighted = bool(np.unique(train_strength.data).size > 1)

    def strength_of(s: Split) -> sp.csr_matrix | None:
        return pair_strengths(s, table.user_id, table.item_id, table.ts_ms, strengths) if weighted else None

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
        params, val_ndcg = tune(make, grid, folds)
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

    cfg, mode, val_ndcg = tune_streamrec([Fold(f, strength_of(f)) for f in folds])
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    inputs = input_matrix(split, train_strength if weighted else None, mode)
    sv = spectrum(inputs, cfg.factors, torch.device("cpu"))
    scorer = lae_scores(split, inputs, split.recency_ranks(), cfg, sv)
    fit_s = time.perf_counter() - start
    metrics, curve = evaluate(scorer, split.train, split.test, with_curves=plot is not None)
    params = {**cfg.to_dict(), "input": mode, "val_ndcg@10": round(val_ndcg, 4)}
    results.append(_result("streamrec", metrics, fit_s, params))
    if curve:
        curves["streamrec"] = curve

    report: dict[str, Any] = {
        "dataset": dataset,
        "protocol": PROTOCOL,
        "validation_folds": len(folds),
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
        plot_curves(curves, dataset, plot)
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


def plot_curves(curves: dict[str, dict[str, list[float]]], dataset: str, path: Path) -> None:
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
