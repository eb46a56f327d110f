"""``streamrec bench quality``: streamrec vs popularity, EASE, ItemKNN, iALS, BPR (and SASRec where
present) on one split, every model tuned with the same budget.

Every row gets the same seeded Optuna TPE search (``tooling.offline.search``) with the same number of
trials, each trial scored by the mean validation NDCG@10 over the validation folds (the protocol applied
inside training, and inside that); the best trial is refit on all training data and tested once. Ranges
are wide, and a choice on a range's edge is reported per row. streamrec's row is reported exactly and
through the FAISS index retrain would publish; its NDCG@10 difference to the best baseline carries a
paired bootstrap 95% interval over test users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from core.event_weights import event_weights
from core.settings import EventWeights, ModelSettings
from tooling.bench.quality_report import (
    Indexed,
    RowOutcome,
    build_report,
    git_revision,
    plot_curves,
    print_report,
)
from tooling.bench.quality_rows import SEED, Row, baseline_rows, ease_recency_row, streamrec_rows
from tooling.offline.datasets import load_dataset
from tooling.offline.evaluation import evaluate, evaluate_users
from tooling.offline.filters import drop_rare_items
from tooling.offline.folds import Fold, lae_scores, tune, validation_folds
from tooling.offline.input_weights import pair_strengths
from tooling.offline.search import SearchResult, search
from tooling.offline.served import fit_served, reindexed, settings_for, training_events
from tooling.offline.split import Split, temporal_split

logger = logging.getLogger(__name__)

__all__ = ["EASE_GRID", "KNN_GRID", "lae_scores", "plot_curves", "run_quality", "tune", "validation_folds"]

# Kept for the demo's cheap comparison (tooling.demo.quality), which grid-tunes EASE and ItemKNN.
EASE_GRID: list[dict[str, Any]] = [{"lam": v} for v in (10.0, 50.0, 200.0, 500.0, 2000.0)]
KNN_GRID: list[dict[str, Any]] = [{"k": v} for v in (20, 50, 100, 200)]
# Trials per model. Measured on ml-100k on 2 cores: one trial round of every row but SASRec ~11 s
# (2 folds), SASRec ~16 s a fit (its SASREC_TRAIN_S cap); 12 trials keep a data set near 10 minutes.
# Raise it with --trials where time allows.
DEFAULT_TRIALS = 12

PROTOCOL = (
    "every event positive; pairs merged keeping the first timestamp; items with fewer than "
    "--min-item-users distinct users dropped first; users >= 5 items; per user the last ceil(20%) items "
    "by time are test; unseen test items dropped; full ranking over training items minus the user's own; "
    "every model (popularity has no parameters) gets the same number of seeded Optuna TPE trials, each "
    "scored by the mean NDCG@10 of 2 validation folds (the same split made inside training, and again "
    "inside that), refit on all training, tested once; event-strength input is a tuned choice for "
    "streamrec and iALS where strengths differ; targets stay binary"
)


@dataclass(frozen=True)
class Prepared:
    split: Split
    full: Fold
    folds: list[Fold]
    weighted: bool


def prepare(
    dataset: str, data_dir: Path, path: Path | None, min_item_users: int, holdout_shift: int = 0
) -> Prepared:
    table = drop_rare_items(load_dataset(dataset, data_dir=data_dir, path=path), min_item_users)
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    for _ in range(holdout_shift):
        # A fresh split (--holdout-shift): the same cut made inside the training part, so the test
        # window is one step earlier and no figure read on the later windows can have steered it.
        split = split.validation()
    # Each training pair's summed production event weight (type weight, times the rating for ``rate``),
    # counted up to the user's training cutoff: iALS's weighted input. A choice only where it differs.
    weights = event_weights(table.event_type, table.value, EventWeights())
    train_weight = pair_strengths(split, table.user_id, table.item_id, table.ts_ms, weights)
    weighted = bool(np.unique(train_weight.data).size > 1)

    def fold_of(s: Split, weight: sp.csr_matrix | None = None) -> Fold:
        if weighted and weight is None:
            weight = pair_strengths(s, table.user_id, table.item_id, table.ts_ms, weights)
        return Fold(s, weight if weighted else None, training_events(s, table))

    folds = [fold_of(f) for f in validation_folds(split)]
    logger.info(
        "bench_split dataset=%s users=%d items=%d train=%d test=%d folds=%d weighted=%s",
        dataset,
        split.n_users,
        split.n_items,
        split.train.nnz,
        split.test.nnz,
        len(folds),
        weighted,
    )
    return Prepared(split, fold_of(split, train_weight), folds, weighted)


def tune_row(row: Row, folds: list[Fold], trials: int) -> SearchResult:
    def objective(params: dict[str, Any]) -> float:
        vals = []
        for fold in folds:
            scorer = row.fit(params, fold)
            vals.append(evaluate(scorer, fold.split.train, fold.split.test)[0]["ndcg@10"])
        return float(np.mean(vals))

    started = time.perf_counter()
    result = search(objective, row.space, trials, seed=SEED, fixed=row.fixed, first=row.first)
    logger.info(
        "tuned row=%s trials=%d val_ndcg10=%.4f s=%.1f edges=%s",
        row.name,
        result.trials,
        result.value,
        time.perf_counter() - started,
        result.edge_params,
    )
    return result


def run_row(row: Row, prepared: Prepared, trials: int) -> RowOutcome:
    started = time.perf_counter()
    result = tune_row(row, prepared.folds, trials)
    tune_s = time.perf_counter() - started
    fit_start = time.perf_counter()
    if row.final:
        result.params = {**result.params, **row.final}
    scorer = row.fit(result.params, prepared.full)
    fit_s = time.perf_counter() - fit_start
    split = prepared.split
    evaluation = evaluate_users(scorer, split.train, split.test)
    return RowOutcome(row.name, result, evaluation, fit_s, tune_s)


def streamrec_indexed(params: dict[str, Any], prepared: Prepared) -> dict[str, Indexed]:
    """streamrec's chosen settings trained by ``fit_model`` as retrain runs it (its index built for this
    catalog size) and ranked through that index with ``exclude_seen`` ("as_retrain"); where retrain
    would search exactly, also through the approximate index forced on the same fit ("forced_ann"),
    and where it would not, through an exact index on the same fit ("exact_index")."""
    full = prepared.full
    assert full.events is not None
    settings = settings_for({**params, "factors": min(int(params["factors"]), full.rank), "seed": SEED})
    fit = fit_served(prepared.split, full.events, settings)
    out = {"as_retrain": Indexed(fit.served_ranking(), fit.index_config())}
    if fit.fitted.model.index_kind == "exact":
        forced = reindexed(fit, settings, 0)
        out["forced_ann"] = Indexed(forced.served_ranking(), forced.index_config())
    else:
        # The same stored vectors through an exact FAISS index: what the approximate index alone costs,
        # apart from how FAISS and the dense ranking order tied scores.
        exact = reindexed(fit, settings, full.split.n_items)
        out["exact_index"] = Indexed(exact.served_ranking(), exact.index_config())
    for name, figures in out.items():
        logger.info("served_ranking %s ndcg10=%.4f", name, figures.evaluation.metrics["ndcg@10"])
    return out


def run_quality(
    dataset: str,
    data_dir: Path,
    path: Path | None,
    json_out: Path | None,
    plot: Path | None = None,
    *,
    trials: int = DEFAULT_TRIALS,
    min_item_users: int = 1,
    holdout_shift: int = 0,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    revision = git_revision()  # at the start: the code that runs, even if the tree changes meanwhile
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    prepared = prepare(dataset, data_dir, path, min_item_users, holdout_shift)
    say = progress or (lambda _msg: None)

    outcomes: list[RowOutcome] = []
    for row in baseline_rows(prepared.weighted) + streamrec_rows():
        say(f"tuning {row.name} ({trials} trials)")
        outcomes.append(run_row(row, prepared, trials))
    streamrec = next(o for o in outcomes if o.name == "streamrec")
    say("tuning ease_recency")
    outcomes.append(run_row(ease_recency_row(streamrec.search.params), prepared, trials))
    say("streamrec through the serving index")
    indexed = streamrec_indexed(streamrec.search.params, prepared)

    report = build_report(
        dataset=dataset,
        protocol=PROTOCOL,
        prepared_split=prepared.split,
        folds=len(prepared.folds),
        outcomes=outcomes,
        indexed=indexed,
        trials=trials,
        min_item_users=min_item_users,
        holdout_shift=holdout_shift,
        exact_search_max_items=ModelSettings().exact_search_max_items,
        command=command,
        revision=revision,
        wall_s=time.perf_counter() - started,
    )
    print_report(report)
    if json_out is not None:
        import json

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if plot is not None:
        plot_curves({o.name: o.evaluation.curves for o in outcomes}, dataset, plot)
    return report
