"""``streamrec bench cold-start``: the hybrid (streamrec's embeddings + the content map) against category
popularity and LightFM on items no model has seen interact.

Each model is tuned on the same protocol applied inside the training pairs (``ColdSplit.validation``),
with the same number of seeded search trials each, then refitted on all training pairs and tested once.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from rich.table import Table

from model.metrics import paired_bootstrap
from tooling.bench.cold_start_data import Catalog, load_cold_start
from tooling.bench.cold_start_eval import (
    COLD_K,
    WARM_K,
    Figures,
    cold_figures,
    served_all_figures,
    served_warm_figures,
    warm_figures,
)
from tooling.bench.cold_start_models import (
    CategoryPopularity,
    Features,
    Hybrid,
    LightFMModel,
    Params,
    lightfm_available,
)
from tooling.bench.cold_start_split import ColdSplit, shifted_cold_split
from tooling.offline.search import Dim, search

logger = logging.getLogger(__name__)

PROTOCOL = (
    "pairs merged keeping the first timestamp; items ordered by their first interaction, the newest 20% "
    "(first seen strictly after the cutoff) are cold: all their interactions leave training, only their "
    "catalog metadata is known; of the warm pairs, per user with >= 5 warm items the newest ceil(20%) are "
    "the warm test, the rest is training; users with >= 1 training item are evaluated. Cold Recall@20 and "
    "NDCG@20: each user's cold items ranked among ALL cold items only (no warm item competes: the "
    "question is which new items to show, not whether new beats old, and category popularity has no "
    "score comparable to a warm item's). Warm NDCG@10 of the tuned hybrid: warm test items ranked "
    "among training items minus the user's own plus every cold item scored from its content (with: the "
    "list serving shows once new items compete) and among the training items alone (without); the "
    "paired bootstrap interval of with minus without is over warm-test users. Tuning: the same protocol "
    "inside the training pairs "
    "(validation cold NDCG@20), the same number of seeded Optuna TPE trials for every tuned model over "
    "ranges whose ends are reported when chosen (tuning.*.edges), then refit on all training pairs"
)
# Appended when --holdout-shift N > 0, so the JSON says which split its figures are on.
SHIFT_PROTOCOL = (
    "; holdout shift N: N times, every held-out pair and every training pair after the cutoff is "
    "dropped and the same split is made inside the training pairs left, so the test period ends where "
    "the unshifted one begins and no test pair was a test pair of the unshifted split"
)
# Every tuned model gets the same number of seeded Optuna TPE trials (tooling.offline.search, as the
# quality benchmark), over ranges wide enough that a choice on an end is reported, not hidden. The hybrid:
# factors (up to the validation data's rank, a natural end) and the LAE ridge, everything else at the
# product's settings; the content map's ridge is chosen as retrain chooses it (held-out R² over
# model.content's grid). Earlier runs also searched a content-profile weight that serving does not have:
# it is gone, so the row measures what ships. Its two starting points are the earlier grid's winners
# (1024/200 on Taobao and amazon-magazine, 512/800 on MovieLens); LightFM's likewise (64/30 and 32/10,
# no identity features).
DEFAULT_TRIALS = 12
HYBRID_MAX_FACTORS = 4096
HYBRID_FIRST: tuple[Params, ...] = (
    {"factors": 1024, "reg": 200.0},
    {"factors": 512, "reg": 800.0},
)
LIGHTFM_SPACE: dict[str, Dim] = {
    "no_components": Dim(8, 256, log=True, integer=True),
    "identity": Dim(choices=(True, False)),
    "epochs": Dim(3, 100, log=True, integer=True),
    "learning_rate": Dim(0.005, 0.2, log=True),
}
LIGHTFM_FIRST: tuple[Params, ...] = (
    {"no_components": 64, "identity": False, "epochs": 30, "learning_rate": 0.05},
    {"no_components": 32, "identity": False, "epochs": 10, "learning_rate": 0.05},
)
CATEGORY_SPACE: dict[str, Dim] = {"alpha": Dim(0.001, 1000.0, log=True)}
CATEGORY_FIRST: tuple[Params, ...] = ({"alpha": 0.1}, {"alpha": 1.0})
BOOTSTRAP_RESAMPLES = 1000
SEED = 42
TARGET_VS_CATEGORY = 1.5


class Prepared:
    """One split with what every candidate on it shares: its catalog and LightFM's catalog features."""

    def __init__(self, split: ColdSplit, catalog: Catalog, seed: int, content_fit: str | None = None) -> None:
        self.split = split
        # None: the product's default (ModelSettings.content_fit), as the Hybrid's own default.
        self.content_fit = content_fit
        self.catalog = catalog
        self.features = Features.of(split, catalog)

    def hybrid(self, params: Params, seed: int) -> Hybrid:
        model = Hybrid(**params, seed=seed)
        if self.content_fit is not None:
            model.content_fit = self.content_fit
        return model.fit(self.split, self.catalog)


def hybrid_space(train: sp.csr_matrix) -> dict[str, Dim]:
    rank = min(*train.shape, HYBRID_MAX_FACTORS)
    return {
        "factors": Dim(8, max(rank, 9), log=True, integer=True, natural_high=rank < HYBRID_MAX_FACTORS),
        "reg": Dim(0.1, 10_000.0, log=True),
    }


def _tune(
    name: str,
    space: dict[str, Dim],
    score: Callable[[Params], float],
    trials: int,
    first: Sequence[Params],
    seed: int,
) -> tuple[Params, float, dict[str, Any]]:
    """The best of ``trials`` seeded TPE trials on the validation figure (ties keep the earlier one)."""
    started = time.perf_counter()
    result = search(score, space, trials, seed=seed, first=first)
    logger.info(
        "tuned model=%s params=%s val=%.4f edges=%s", name, result.params, result.value, result.edge_params
    )
    record = {
        "trials": result.trials,
        "edges": result.edge_params,
        "s": round(time.perf_counter() - started, 1),
        "history": [{**p, "val": round(v, 4)} for p, v in result.history],
    }
    return result.params, result.value, record


def _row(
    name: str, figures: Figures, split: ColdSplit, params: Params, val: float, fit_s: float
) -> dict[str, Any]:
    return {
        "model": name,
        f"recall@{COLD_K}": round(figures.metrics[f"recall@{COLD_K}"], 4),
        f"ndcg@{COLD_K}": round(figures.metrics[f"ndcg@{COLD_K}"], 4),
        "cold_items": len(split.cold_ids),
        "users": figures.users,
        "params": params,
        f"val_ndcg@{COLD_K}": round(val, 4),
        "fit_s": round(fit_s, 2),
    }


def run_cold_start(
    dataset: str,
    data_dir: Path,
    json_out: Path | None,
    seed: int = SEED,
    holdout_shift: int = 0,
    content_fit: str | None = None,
    trials: int = DEFAULT_TRIALS,
) -> dict[str, Any]:
    started = time.perf_counter()
    revision = _git_revision()  # what is measured: the tree as the run starts, not as it ends
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    table, catalog = load_cold_start(dataset, data_dir)
    split = shifted_cold_split(table.user_id, table.item_id, table.ts_ms, holdout_shift)
    val = Prepared(split.validation(), catalog, seed, content_fit)
    full = Prepared(split, catalog, seed, content_fit)
    logger.info("cold_split dataset=%s %s validation=%s", dataset, split.stats(), val.split.stats())
    results: list[dict[str, Any]] = []
    notes: list[str] = []

    # Hybrid: the search on validation cold NDCG@20.
    def hybrid_val(p: Params) -> float:
        return cold_figures(val.hybrid(p, seed).cold_scores, val.split).metrics[f"ndcg@{COLD_K}"]

    h_params, h_val, h_trials = _tune(
        "hybrid", hybrid_space(val.split.train), hybrid_val, trials, HYBRID_FIRST, seed
    )
    start = time.perf_counter()
    hybrid = full.hybrid(h_params, seed)
    fit_s = time.perf_counter() - start
    h_figures = cold_figures(hybrid.cold_scores, split)
    chosen = {
        **h_params,
        "content_reg_used": hybrid.chosen_content_reg,
        "content_fit": hybrid.content_fit,
        "content_fit_chosen": hybrid.chosen_content_fit,
        "content_fit_scores": hybrid.content_fit_scores,
        "rank_steps": hybrid.rank_steps,
    }
    results.append(_row("hybrid", h_figures, split, chosen, h_val, fit_s))
    per_user: dict[str, Figures] = {"hybrid": h_figures}

    def category_val(p: Params) -> float:
        model = CategoryPopularity(**p, seed=seed).fit(val.split, catalog)
        return cold_figures(model.cold_scores, val.split).metrics[f"ndcg@{COLD_K}"]

    c_params, c_val, c_trials = _tune(
        "category_popularity", CATEGORY_SPACE, category_val, trials, CATEGORY_FIRST, seed
    )
    start = time.perf_counter()
    category = CategoryPopularity(**c_params, seed=seed).fit(split, catalog)
    fit_s = time.perf_counter() - start
    per_user["category_popularity"] = cold_figures(category.cold_scores, split)
    results.append(
        _row("category_popularity", per_user["category_popularity"], split, c_params, c_val, fit_s)
    )
    g_figures = cold_figures(category.global_scores, split)
    g_val = cold_figures(CategoryPopularity(seed=seed).fit(val.split, catalog).global_scores, val.split)
    results.append(
        _row("category_popularity_global", g_figures, split, {}, g_val.metrics[f"ndcg@{COLD_K}"], fit_s)
    )

    l_trials: dict[str, Any] = {}
    if lightfm_available():

        def lightfm_val(p: Params) -> float:
            model = LightFMModel(**p, seed=seed).fit(val.split, val.features)
            return cold_figures(model.cold_scores, val.split).metrics[f"ndcg@{COLD_K}"]

        l_params, l_val, l_trials = _tune("lightfm", LIGHTFM_SPACE, lightfm_val, trials, LIGHTFM_FIRST, seed)
        start = time.perf_counter()
        lightfm = LightFMModel(**l_params, seed=seed).fit(split, full.features)
        fit_s = time.perf_counter() - start
        per_user["lightfm"] = cold_figures(lightfm.cold_scores, split)
        results.append(_row("lightfm", per_user["lightfm"], split, l_params, l_val, fit_s))
    else:
        notes.append(
            "lightfm is not importable: its row is skipped (build it with pip<25 and --no-use-pep517; see "
            "BENCHMARKS.md)"
        )

    with_content = served_warm_figures(hybrid.served_scores, split)
    without = warm_figures(hybrid.warm_scores, split)
    mean, lo, hi = paired_bootstrap(
        with_content.per_user_ndcg, without.per_user_ndcg, resamples=BOOTSTRAP_RESAMPLES, seed=seed
    )
    all_with = served_all_figures(hybrid.served_scores, split)
    all_without = served_all_figures(hybrid.served_without_content, split)
    report: dict[str, Any] = {
        "command": " ".join(["streamrec", *sys.argv[1:]]),
        "git_revision": revision,
        "dataset": dataset,
        "metadata": catalog.source,
        "protocol": PROTOCOL + (SHIFT_PROTOCOL if holdout_shift else ""),
        "holdout_shift": holdout_shift,
        "split": split.stats(),
        "validation_split": val.split.stats(),
        "results": results,
        f"warm_ndcg@{WARM_K}_with_content": round(with_content.metrics[f"ndcg@{WARM_K}"], 4),
        f"warm_ndcg@{WARM_K}_without_content": round(without.metrics[f"ndcg@{WARM_K}"], 4),
        "warm_difference": {
            "mean": round(mean, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": seed,
            "users": with_content.users,
        },
        # Context for the warm figure, which counts a new item a shopper did take as a miss: every test
        # item counted, the served list with new items in it against the list without them.
        f"served_ndcg@{WARM_K}_all_test_items": {
            "with_content": round(all_with.metrics[f"ndcg@{WARM_K}"], 4),
            "without_content": round(all_without.metrics[f"ndcg@{WARM_K}"], 4),
            "users": all_with.users,
            "difference": _interval(all_with.per_user_ndcg, all_without.per_user_ndcg, seed),
        },
        "tuning": {"hybrid": h_trials, "category_popularity": c_trials, "lightfm": l_trials},
        # The same users in the same order for every model: the hybrid's cold NDCG@20 minus each other's.
        f"cold_ndcg@{COLD_K}_hybrid_minus": {
            name: _interval(h_figures.per_user_ndcg, other.per_user_ndcg, seed)
            for name, other in per_user.items()
            if name != "hybrid"
        },
        "targets": _targets(results, lo, hi),
        "notes": notes,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    _print(report)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _interval(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, Any]:
    mean, lo, hi = paired_bootstrap(a, b, resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return {"mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def _targets(results: list[dict[str, Any]], lo: float, hi: float) -> dict[str, Any]:
    ndcg = {r["model"]: r[f"ndcg@{COLD_K}"] for r in results}
    out: dict[str, Any] = {}
    cat = ndcg["category_popularity"]
    ratio = ndcg["hybrid"] / cat if cat > 0 else float("inf")
    out["hybrid_over_category_popularity_ndcg@20"] = round(ratio, 2)
    out["hybrid_at_least_1.5x_category_popularity"] = bool(ratio >= TARGET_VS_CATEGORY)
    if "lightfm" in ndcg:
        out["hybrid_at_least_lightfm_ndcg@20"] = bool(ndcg["hybrid"] >= ndcg["lightfm"])
    # "Not worse": the interval of (with - without) does not lie wholly below zero.
    out["warm_with_content_not_worse"] = bool(hi >= 0.0)
    return out


def _git_revision() -> str:
    from tooling.bench.common import git_revision

    return git_revision()


def _print(report: dict[str, Any]) -> None:
    split = report["split"]
    table = Table(
        title=f"cold start: {report['dataset']} ({split['cold_items']} cold items, "
        f"{split['cold_test_users']} users with cold test items)"
    )
    for col in ("model", f"recall@{COLD_K}", f"ndcg@{COLD_K}", "users", "fit_s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in report["results"]:
        table.add_row(
            r["model"],
            f"{r[f'recall@{COLD_K}']:.4f}",
            f"{r[f'ndcg@{COLD_K}']:.4f}",
            str(r["users"]),
            f"{r['fit_s']:.2f}",
        )
    console = Console()
    console.print(table)
    warm = report["warm_difference"]
    console.print(
        f"warm NDCG@{WARM_K}: with content {report[f'warm_ndcg@{WARM_K}_with_content']:.4f} "
        "(new items competing), "
        f"without {report[f'warm_ndcg@{WARM_K}_without_content']:.4f}; difference {warm['mean']:+.4f} "
        f"[{warm['ci95'][0]:+.4f}, {warm['ci95'][1]:+.4f}] over {warm['users']} users"
    )
    served = report[f"served_ndcg@{WARM_K}_all_test_items"]
    lo, hi = served["difference"]["ci95"]
    console.print(
        f"served NDCG@{WARM_K}, every test item: with new items {served['with_content']:.4f}, without "
        f"{served['without_content']:.4f}; difference {served['difference']['mean']:+.4f} "
        f"[{lo:+.4f}, {hi:+.4f}]"
    )
    for name, diff in report[f"cold_ndcg@{COLD_K}_hybrid_minus"].items():
        lo, hi = diff["ci95"]
        console.print(f"hybrid minus {name}, cold NDCG@{COLD_K}: {diff['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    console.print(f"targets: {report['targets']}")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
