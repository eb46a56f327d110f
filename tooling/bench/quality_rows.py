"""The rows of ``bench quality``: each model's search space, its default (first) trial, and how it fits
on a fold and scores users.

Every row gets the same search (``tooling.offline.search``, same trial count, same seed). Ranges are
wide on purpose: a choice on a range's edge is reported (``edge_params``) instead of silently capping a
baseline. Each row's first trial is its conventional default, so a small budget never does worse than it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.lae import TrainConfig
from model.recency import apply_recency
from tooling.offline.baselines import EASE, Baseline, ImplicitFactors, ItemKNN, Popularity, implicit_available
from tooling.offline.evaluation import ScoreFn
from tooling.offline.folds import MAX_FACTORS, Fold, lae_scores
from tooling.offline.input_weights import INPUT_MODES
from tooling.offline.search import Dim, Space

Params = dict[str, Any]
SEED = 42
BASELINES = ("popularity", "ease", "itemknn", "ials", "bpr", "sasrec")  # candidates for "best baseline"


@dataclass(frozen=True)
class Row:
    name: str
    space: Space
    fit: Callable[[Params, Fold], ScoreFn]  # fit on the fold's training data, return its scorer
    first: tuple[Params, ...] = ()
    fixed: Params = field(default_factory=dict)


def _input_dim(weighted: bool) -> dict[str, Dim]:
    """Event-strength input is a tuned choice only where the training pairs' strengths differ."""
    return {"input": Dim(choices=INPUT_MODES)} if weighted else {}


def _fit_baseline(make: Callable[[Params], Baseline], uses_input: bool = False) -> Callable[..., ScoreFn]:
    def fit(params: Params, fold: Fold) -> ScoreFn:
        model = make({k: v for k, v in params.items() if k != "input"})
        model.fit(fold.inputs(params.get("input", "binary")) if uses_input else fold.split.train)
        return model.score

    return fit


def baseline_rows(weighted: bool) -> list[Row]:
    rows = [
        Row("popularity", {}, _fit_baseline(lambda p: Popularity())),
        Row(
            "ease",
            {"lam": Dim(1.0, 1e5, log=True)},
            _fit_baseline(lambda p: EASE(**p)),
            first=({"lam": 200.0},),
        ),
        Row(
            "itemknn",
            {"k": Dim(5, 2000, log=True, integer=True)},
            _fit_baseline(lambda p: ItemKNN(**p)),
            first=({"k": 100},),
        ),
    ]
    if implicit_available():
        rows.append(
            Row(
                "ials",
                {
                    "factors": Dim(8, 512, log=True, integer=True),
                    "regularization": Dim(1e-3, 1e3, log=True),
                    # confidence 1 + alpha * r: with event-strength input, r is the pair's strength
                    "alpha": Dim(0.01, 100.0, log=True),
                    **_input_dim(weighted),
                },
                _fit_baseline(lambda p: ImplicitFactors("ials", seed=SEED, **p), uses_input=True),
                first=({"factors": 128, "regularization": 1.0, "alpha": 1.0, "input": "binary"},),
                fixed={"iterations": 15},
            )
        )
        rows.append(
            Row(
                "bpr",
                {
                    "factors": Dim(8, 512, log=True, integer=True),
                    "learning_rate": Dim(1e-3, 0.3, log=True),
                    "regularization": Dim(1e-5, 1.0, log=True),
                    "iterations": Dim(20, 300, log=True, integer=True),
                },
                _fit_baseline(lambda p: ImplicitFactors("bpr", seed=SEED, **p)),
                first=({"factors": 128, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},),
            )
        )
    sasrec = sasrec_row()
    if sasrec is not None:
        rows.append(sasrec)
    return rows


def sasrec_row() -> Row | None:
    """The sequential baseline (``tooling.offline.sasrec``) when it is there and PyTorch can run it;
    it is told each user's training order (``set_order``) before it fits."""
    try:
        module = importlib.import_module("tooling.offline.sasrec")
    except ImportError:
        return None
    cls = module.SASRec
    space: Space = getattr(module, "SEARCH_SPACE", {})
    first = tuple(getattr(module, "FIRST_TRIALS", ()))

    def fit(params: Params, fold: Fold) -> ScoreFn:
        model = cls(**params)
        if hasattr(model, "set_order"):
            model.set_order(fold.ranks)
        model.fit(fold.split.train)
        return model.score  # type: ignore[no-any-return]

    return Row("sasrec", space, fit, first=first)


def streamrec_space(weighted: bool, rank: int, recency: bool = True) -> dict[str, Dim]:
    """``rank`` is the smallest fold's min(users, items): factors at or above it are full rank."""
    high = min(MAX_FACTORS, rank)
    space = {
        "factors": Dim(16, high, log=True, integer=True, natural_high=high == rank),
        "reg": Dim(1.0, 1e5, log=True),
        "diag_correction": Dim(choices=(True, False)),
        "pop_weight": Dim(0.0, 1.0, natural_low=True),
        **_input_dim(weighted),
    }
    if recency:
        space["recency_boost"] = Dim(0.0, 30.0, natural_low=True)
        space["recency_half_life"] = Dim(1.0, 300.0, log=True)
    return space


def train_config(params: Params, rank: int | None = None) -> TrainConfig:
    factors = int(params["factors"])
    return TrainConfig(
        factors=factors if rank is None else min(factors, rank),
        reg=float(params["reg"]),
        recency_boost=float(params.get("recency_boost", 0.0)),
        recency_half_life=float(params.get("recency_half_life", 10.0)),
        pop_weight=float(params.get("pop_weight", 0.0)),
        diag_correction=bool(params.get("diag_correction", True)),
        seed=SEED,
    )


def fit_streamrec(params: Params, fold: Fold) -> ScoreFn:
    mode = params.get("input", "binary")
    # Factors above the rank add zero columns only; clamping saves the work, the scores are the same.
    cfg = train_config(params, fold.rank)
    return lae_scores(fold.split, fold.inputs(mode), fold.ranks, cfg, fold.spectrum(mode, SEED))


def streamrec_rows(weighted: bool, rank: int) -> list[Row]:
    """streamrec and its ablation without the recency boost, searched separately with the same budget."""
    default = {
        "factors": min(512, rank),
        "reg": 200.0,
        "diag_correction": True,
        "pop_weight": 0.0,
        "input": "binary",
    }
    return [
        Row(
            "streamrec",
            streamrec_space(weighted, rank),
            fit_streamrec,
            first=({**default, "recency_boost": 3.0, "recency_half_life": 10.0},),
        ),
        Row(
            "streamrec_no_recency",
            streamrec_space(weighted, rank, recency=False),
            fit_streamrec,
            first=(default,),
            fixed={"recency_boost": 0.0},
        ),
    ]


def ease_recency_row(streamrec_params: Params) -> Row:
    """EASE trained on streamrec's chosen input matrix and scored from the same recency-weighted history
    streamrec's user tower reads: what streamrec adds beyond that input is then its low rank, bias and
    diagonal choice."""
    mode = streamrec_params.get("input", "binary")
    boost = float(streamrec_params.get("recency_boost", 0.0))
    half_life = float(streamrec_params.get("recency_half_life", 10.0))

    def fit(params: Params, fold: Fold) -> ScoreFn:
        inputs = fold.inputs(mode)
        model = EASE(lam=float(params["lam"]))
        model.fit(inputs)

        def score(rows: np.ndarray) -> np.ndarray:
            return model.scores_of(apply_recency(inputs[rows], fold.ranks[rows], boost, half_life))

        return score

    return Row(
        "ease_recency",
        {"lam": Dim(1.0, 1e5, log=True)},
        fit,
        first=({"lam": 200.0},),
        fixed={"input": mode, "recency_boost": boost, "recency_half_life": half_life},
    )
