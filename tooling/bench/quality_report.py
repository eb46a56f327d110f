"""``bench quality``'s JSON report, its table and its plot.

The JSON keeps the keys of earlier reports (dataset, protocol, validation_folds, split, results with
model/recall@10/recall@20/ndcg@10/hr@10/fit_s/params, notes) and adds per row hits@10, users, trials,
edge_params and the paired bootstrap interval of the NDCG@10 difference to the best baseline.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tooling.bench.quality_rows import BASELINES
from tooling.offline.evaluation import UserEvaluation
from tooling.offline.intervals import RESAMPLES, best_by, delta_ci95, verdict
from tooling.offline.search import SearchResult
from tooling.offline.split import Split

STREAMREC = "streamrec"


@dataclass(frozen=True)
class Indexed:
    """streamrec's test ranking through a FAISS index, and what that index is."""

    evaluation: UserEvaluation
    index: dict[str, Any]


@dataclass(frozen=True)
class RowOutcome:
    name: str
    search: SearchResult
    evaluation: UserEvaluation
    fit_s: float
    tune_s: float


def git_revision() -> str:
    """HEAD of the repository the code runs from, with ``-dirty`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _row(o: RowOutcome) -> dict[str, Any]:
    m = o.evaluation.metrics
    val = round(o.search.value, 4)
    return {
        "model": o.name,
        "recall@10": round(m["recall@10"], 4),
        "recall@20": round(m["recall@20"], 4),
        "ndcg@10": round(m["ndcg@10"], 4),
        "hr@10": round(m["hr@10"], 4),
        "fit_s": round(o.fit_s, 2),
        "params": {**{k: _plain(v) for k, v in o.search.params.items()}, "val_ndcg@10": val},
        "hits@10": o.evaluation.hits,
        "users": o.evaluation.users,
        "trials": o.search.trials,
        "edge_params": o.search.edge_params,
        "val_ndcg@10": val,
        "tune_s": round(o.tune_s, 1),
    }


def build_report(
    *,
    dataset: str,
    protocol: str,
    prepared_split: Split,
    folds: int,
    outcomes: list[RowOutcome],
    indexed: dict[str, Indexed],
    trials: int,
    min_item_users: int,
    exact_search_max_items: int,
    holdout_shift: int = 0,
    command: str,
    revision: str,
    wall_s: float,
) -> dict[str, Any]:
    by_name = {o.name: o for o in outcomes}
    baselines = [o for o in outcomes if o.name in BASELINES]
    best_test = best_by({o.name: o.evaluation.metrics["ndcg@10"] for o in baselines})
    best_val = best_by({o.name: o.search.value for o in baselines})
    ndcg = {o.name: o.evaluation.per_user["ndcg@10"] for o in outcomes}
    results = []
    for o in outcomes:
        row = _row(o)
        row["ndcg@10_delta_ci95"] = delta_ci95(ndcg[o.name], ndcg[best_test])
        results.append(row)
    sr = next(r for r in results if r["model"] == STREAMREC)
    lo, hi = sr["ndcg@10_delta_ci95"][1:]
    sr["verdict_vs_best_baseline"] = verdict(lo, hi)
    sr["ndcg@10_delta_ci95_vs_best_by_validation"] = delta_ci95(ndcg[STREAMREC], ndcg[best_val])
    as_retrain = indexed["as_retrain"]
    sr["ndcg@10_ann"] = round(as_retrain.evaluation.metrics["ndcg@10"], 4)
    sr["ndcg@10_ann_index"] = as_retrain.index
    if "forced_ann" in indexed:
        sr["ndcg@10_ann_forced"] = round(indexed["forced_ann"].evaluation.metrics["ndcg@10"], 4)
        sr["ndcg@10_ann_forced_index"] = indexed["forced_ann"].index
    if "exact_index" in indexed:
        # Served through an exact FAISS index: ndcg@10_ann over this is the approximate index's own loss.
        sr["ndcg@10_exact_index"] = round(indexed["exact_index"].evaluation.metrics["ndcg@10"], 4)
        sr["hits@10_exact_index"] = indexed["exact_index"].evaluation.hits
        sr["hits@10_ann"] = as_retrain.evaluation.hits
    n_items = prepared_split.n_items
    exact = n_items <= exact_search_max_items
    notes = [
        f"ndcg@10_delta_ci95 = [mean, low, high] of NDCG@10(row) - NDCG@10({best_test}) over the "
        f"{by_name[best_test].evaluation.users} test users, paired bootstrap, {RESAMPLES} resamples, seed "
        f"fixed; {best_test} is the best baseline by test NDCG@10 ({best_val} by validation)",
        "ablations (streamrec_no_recency, ease_recency) are not candidates for the best baseline",
    ]
    if exact:
        notes.append(
            f"catalog {n_items} items <= exact_search_max_items {exact_search_max_items}: retrain builds an "
            "exact index, so ndcg@10_ann equals the exact ranking; ndcg@10_ann_forced is the approximate "
            "index (model.ann_index) retrain would build above that size, forced on this catalog"
        )
    for o in outcomes:
        if o.search.edge_params:
            notes.append(f"{o.name}: chosen on a range edge: {', '.join(o.search.edge_params)}")
    return {
        "dataset": dataset,
        "protocol": protocol,
        "validation_folds": folds,
        "split": {
            "users": prepared_split.n_users,
            "items": n_items,
            "train": int(prepared_split.train.nnz),
            "test": int(prepared_split.test.nnz),
        },
        "results": results,
        "notes": notes,
        # streamrec's rows are trained by model.pipeline.fit_model with a ModelSettings (what retrain
        # runs) and scored through its read side (TrainedModel; its index with exclude_seen for _ann).
        "served_path": True,
        "trials": trials,
        "min_item_users": min_item_users,
        "holdout_shift": holdout_shift,
        "best_baseline_by_test": best_test,
        "best_baseline_by_validation": best_val,
        "ann": {
            "exact_search_max_items": exact_search_max_items,
            "retrain_index": "exact" if exact else "approximate",
        },
        "command": command,
        "git_revision": revision,
        "wall_s": round(wall_s, 1),
    }


def print_report(report: dict[str, Any]) -> None:
    table = Table(
        title=f"quality: {report['dataset']} ({report['split']['users']} users, "
        f"{report['split']['items']} items, {report['trials']} trials per model)"
    )
    cols = ("model", "ndcg@10", "recall@10", "hr@10", "hits@10", "val", "Δ ndcg@10 [95% CI]", "edges")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "edges") else "right")
    for r in report["results"]:
        mean, lo, hi = r["ndcg@10_delta_ci95"]
        table.add_row(
            r["model"],
            f"{r['ndcg@10']:.4f}",
            f"{r['recall@10']:.4f}",
            f"{r['hr@10']:.4f}",
            str(r["hits@10"]),
            f"{r['val_ndcg@10']:.4f}",
            escape(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"),
            str(len(r["edge_params"])),
            style="bold" if r["model"] == STREAMREC else None,
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)


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
