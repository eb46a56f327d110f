"""`streamrec demo`'s quality step: the stored events judged with `bench quality`'s protocol.

Three models are fitted on the training part of ``tooling.offline.split.temporal_split`` and ranked over every
training item by ``tooling.offline.evaluation`` (the code `bench quality` runs): streamrec with the configured
hyper-parameters (not tuned here: the demo shows the product as configured), popularity, and the cheap
`bench quality` baseline (EASE or ItemKNN) whose grid-tuned form scores best on `bench quality`'s
validation folds, which lie inside the training data. The test part is looked at once, after every
choice is made. Each baseline's difference to streamrec gets a paired bootstrap interval over users, and
the verdict comes from that interval alone.

The pure parts (rows, interval wording) are unit-tested; ``compare`` needs only an ``EventTable``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.event_table import EventTable
from model.errors import EmptyDataError
from model.lae import TrainConfig
from model.metrics import paired_bootstrap
from tooling.offline.baselines import EASE, Baseline, ItemKNN, Popularity
from tooling.offline.evaluation import UserEvaluation, evaluate_users

log = logging.getLogger(__name__)

K = 10
METRICS = (f"ndcg@{K}", f"recall@{K}", f"hr@{K}")
LABELS = {f"ndcg@{K}": f"NDCG@{K}", f"recall@{K}": f"Recall@{K}", f"hr@{K}": f"HR@{K}"}
# Fewer evaluated users than this and two models can rarely be told apart; the demo says so.
MIN_USERS = 100
LEVEL = 0.95


@dataclass(frozen=True)
class ModelFigures:
    name: str
    detail: str  # how the model was configured or chosen, for the reader
    evaluation: UserEvaluation


@dataclass(frozen=True)
class Difference:
    """streamrec minus a baseline on one metric: the mean over users and its bootstrap interval."""

    mean: float
    lo: float
    hi: float

    @property
    def verdict(self) -> str:
        return interval_verdict(self.lo, self.hi)


@dataclass(frozen=True)
class Comparison:
    users: int  # evaluated users (with at least one held-out item seen in training)
    split_users: int  # users with >= 5 items, the split's rows
    items: int  # training items: the candidates every model ranks
    models: list[ModelFigures]  # streamrec first
    notes: list[str] = field(default_factory=list)

    @property
    def streamrec(self) -> ModelFigures:
        return self.models[0]

    @property
    def baselines(self) -> list[ModelFigures]:
        return self.models[1:]

    def difference(self, baseline: ModelFigures, metric: str) -> Difference:
        mean, lo, hi = paired_bootstrap(
            self.streamrec.evaluation.per_user[metric], baseline.evaluation.per_user[metric], level=LEVEL
        )
        return Difference(mean, lo, hi)

    def curves(self) -> dict[str, dict[str, list[float]]]:
        return {m.name: m.evaluation.curves for m in self.models}


def interval_verdict(lo: float, hi: float) -> str:
    """streamrec's standing against a baseline from the interval of (streamrec - baseline) alone."""
    if math.isnan(lo) or math.isnan(hi):
        return "no clear difference"
    if lo > 0.0:
        return "better"
    if hi < 0.0:
        return "worse"
    return "no clear difference"


def figure_cells(evaluation: UserEvaluation) -> list[str]:
    """NDCG@10, Recall@10 and HR@10 as means, then the count behind HR@10 (users with a hit / users)."""
    hits = int(evaluation.per_user[f"hr@{K}"].sum())
    return [f"{evaluation.metrics[m]:.4f}" for m in METRICS] + [f"{hits}/{evaluation.users}"]


def difference_cells(diff: Difference) -> list[str]:
    """streamrec minus the baseline, its interval, and the verdict the interval gives."""
    return [f"{diff.mean:+.4f}", f"[{diff.lo:+.4f}, {diff.hi:+.4f}]", diff.verdict]


def summary_line(comparison: Comparison, metric: str = f"ndcg@{K}") -> str:
    """One sentence a newcomer reads first, e.g. "streamrec is better than popularity and ..."."""
    parts = []
    for baseline in comparison.baselines:
        verdict = comparison.difference(baseline, metric).verdict
        phrase = {
            "better": f"better than {baseline.name}",
            "worse": f"worse than {baseline.name}",
        }.get(verdict, f"not clearly different from {baseline.name}")
        parts.append(phrase)
    return (
        f"{LABELS[metric]}: streamrec is "
        + " and ".join(parts)
        + f" (paired bootstrap {LEVEL:.0%} intervals over {comparison.users:,} users)"
    )


def users_note(users: int) -> str | None:
    if users >= MIN_USERS:
        return None
    return (
        f"only {users} users could be evaluated, fewer than {MIN_USERS}: the intervals are wide and a "
        "verdict may flip with more data; stream more events (--events) for a fair judgement"
    )


# ------------------------------------------------------------------------------------------ compare


def _cheap_baselines() -> list[tuple[str, Callable[[dict[str, Any]], Baseline], list[dict[str, Any]]]]:
    # EASE and ItemKNN fit in seconds on the demo's data; `bench quality`'s iALS and BPR take minutes to
    # tune on 2 cores and need the optional `implicit` package.
    from tooling.bench.quality import EASE_GRID, KNN_GRID

    return [
        ("EASE", lambda p: EASE(**p), EASE_GRID),
        ("ItemKNN", lambda p: ItemKNN(**p), KNN_GRID),
    ]


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def compare(table: EventTable, config: TrainConfig) -> Comparison:
    """Split, choose the baseline on validation, fit each model on training, evaluate each on test once.

    Raises ``model.errors.EmptyDataError`` when the events leave nothing to split or evaluate.
    """
    import torch

    from model.lae import spectrum
    from tooling.bench.quality import lae_scores, tune, validation_folds
    from tooling.offline.input_weights import input_matrix
    from tooling.offline.split import temporal_split

    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    if split.test.nnz == 0:
        raise EmptyDataError("no user has a held-out item that also occurs in training")
    notes: list[str] = []

    # streamrec as `bench quality` fits it (binary input), with the configured hyper-parameters.
    torch.manual_seed(config.seed)
    inputs = input_matrix(split, None, "binary")
    sv = spectrum(inputs, config.factors, torch.device("cpu"))
    scorer = lae_scores(split, inputs, split.recency_ranks(), config, sv)
    streamrec = ModelFigures(
        "streamrec",
        f"configured: {config.factors} factors, reg {config.reg:g}, recency boost {config.recency_boost:g}, "
        f"pop weight {config.pop_weight:g}; binary input, as `bench quality` fits it",
        evaluate_users(scorer, split.train, split.test),
    )

    popularity = Popularity()
    popularity.fit(split.train)
    models = [streamrec]
    best = _best_baseline(split, validation_folds, tune, notes)
    if best is not None:
        name, model, detail = best
        model.fit(split.train)
        models.append(ModelFigures(name, detail, evaluate_users(model.score, split.train, split.test)))
    models.append(
        ModelFigures(
            "popularity", "most frequent items", evaluate_users(popularity.score, split.train, split.test)
        )
    )
    return Comparison(
        users=streamrec.evaluation.users,
        split_users=split.n_users,
        items=split.n_items,
        models=models,
        notes=notes,
    )


def _best_baseline(
    split: Any, folds_of: Callable[..., Any], tune: Callable[..., Any], notes: list[str]
) -> tuple[str, Baseline, str] | None:
    try:
        folds = folds_of(split)
    except EmptyDataError as exc:
        notes.append(f"no validation split inside the training data ({exc}): only popularity is compared")
        return None
    best: tuple[str, Baseline, str] | None = None
    best_val = -1.0
    for name, make, grid in _cheap_baselines():
        params, val = tune(make, grid, folds)
        log.info("event=demo_baseline_tuned model=%s params=%s val_ndcg10=%.4f", name, params, val)
        if val > best_val:
            detail = (
                f"best cheap baseline on validation ({_params_text(params)}; validation NDCG@{K} {val:.4f})"
            )
            best, best_val = (name, make(params), detail), val
    return best


def write_plot(comparison: Comparison, title: str, path: Path) -> Path:
    from tooling.bench.quality import plot_curves

    plot_curves(comparison.curves(), title, path)
    return path


def print_comparison(console: Any, comparison: Comparison, data_users: int) -> None:
    """The figures table, the differences table, the one-line summary and any caveat, on ``console``.

    Both tables fit an 80-column terminal: one row per model, then one row per baseline and metric."""
    from rich.table import Table

    console.print(
        f"held-out quality, `bench quality` protocol: {comparison.users:,} users evaluated "
        f"(of {data_users:,} in the data; {comparison.split_users:,} have >= 5 items); per user the last "
        f"20% of items by time are held out and {comparison.items:,} training items are ranked",
        highlight=False,
    )
    figures = Table()
    figures.add_column("model")
    for metric in METRICS:
        figures.add_column(LABELS[metric], justify="right")
    figures.add_column("users hit", justify="right")
    for model in comparison.models:
        figures.add_row(model.name, *figure_cells(model.evaluation))
    console.print(figures)
    for model in comparison.models:
        console.print(f"  {model.name}: {model.detail}", highlight=False)
    diffs = Table(title=f"streamrec minus each baseline, paired bootstrap {LEVEL:.0%} interval over users")
    for column in ("baseline", "metric", "diff", "interval", "streamrec is"):
        diffs.add_column(column, justify="right" if column in ("diff", "interval") else "left", no_wrap=True)
    for baseline in comparison.baselines:
        for metric in METRICS:
            diffs.add_row(
                baseline.name, LABELS[metric], *difference_cells(comparison.difference(baseline, metric))
            )
    console.print(diffs)
    console.print(summary_line(comparison), highlight=False)
    note = users_note(comparison.users)
    for line in ([note] if note else []) + comparison.notes:
        console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
