"""The rows of ``bench quality``: each model's search space, its default (first) trial, and how it fits
on a fold and scores users.

Every row gets the same search (``tooling.offline.search``, same trial count, same seed). Ranges are
wide on purpose: a choice on a range's edge is reported (``edge_params``) instead of silently capping a
baseline. Each row's first trial is its conventional default, so a small budget never does worse than it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.recency import apply_recency
from retrain.tuning import SEARCH_SPACE
from tooling.offline.baselines import EASE, Baseline, ImplicitFactors, ItemKNN, Popularity, implicit_available
from tooling.offline.evaluation import ScoreFn
from tooling.offline.folds import Fold
from tooling.offline.search import Dim, Space
from tooling.offline.served import NO_ANN, fit_served, production_inputs, settings_for

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
    final: Params = field(default_factory=dict)  # overrides for the refit on all training data


# iALS's input choices, named as ModelSettings.input_weighting names them for streamrec: linear = the
# pair's summed production event weight (rating values included), binary, log = 1 + ln(max(sum, 1)).
INPUT_MODES = {"binary": "binary", "linear": "strength", "log": "log"}


def _input_dim(weighted: bool) -> dict[str, Dim]:
    """Weighted input is a tuned choice only where the training pairs' weights differ."""
    return {"input": Dim(choices=tuple(INPUT_MODES))} if weighted else {}


def _fit_baseline(make: Callable[[Params], Baseline], uses_input: bool = False) -> Callable[..., ScoreFn]:
    def fit(params: Params, fold: Fold) -> ScoreFn:
        model = make({k: v for k, v in params.items() if k != "input"})
        mode = INPUT_MODES[params.get("input", "binary")]
        model.fit(fold.inputs(mode) if uses_input else fold.split.train)
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


# SASRec's training time per fit (its max_train_s; its epochs are searched below that cap). On ml-100k
# 20 epochs of the full data take ~30 s on 2 cores, a validation fold's ~20 s; with the same trial count
# as every model, this cap is what keeps one data set's run within 15 minutes. The JSON's params show it.
SASREC_TRAIN_S = 20.0
# The refit on all training data (up to twice a fold's data) gets more time, so the chosen epochs are
# not cut short by a cap sized for the smaller folds (ml-100k: test NDCG@10 0.13 under the 20 s cap
# against 0.21 on validation).
SASREC_FINAL_TRAIN_S = 90.0


def _dims_of(space: dict[str, Any]) -> dict[str, Dim]:
    """SASRec's declared space (lists: choices; (low, high[, "log"]): ranges) as search dims."""
    dims = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            dims[name] = Dim(choices=tuple(spec))
        else:
            integer = all(isinstance(v, int) for v in spec[:2])
            dims[name] = Dim(spec[0], spec[1], log=len(spec) > 2 and spec[2] == "log", integer=integer)
    return dims


def sasrec_row() -> Row | None:
    """The sequential baseline (``tooling.offline.sasrec``) when it is there; it is told each user's
    training order (``set_order``, the split's recency ranks) before it fits."""
    try:
        module = importlib.import_module("tooling.offline.sasrec")
    except ImportError:
        return None
    cls = module.SASRec

    def fit(params: Params, fold: Fold) -> ScoreFn:
        model = cls(**params)
        if hasattr(model, "set_order"):
            model.set_order(fold.ranks)
        model.fit(fold.split.train)
        return model.score  # type: ignore[no-any-return]

    space = _dims_of(getattr(module, "SASREC_SPACE", {}))
    fixed = {"max_train_s": SASREC_TRAIN_S, "seed": SEED}
    # SASRec's own defaults (its constructor's) as the first trial.
    defaults = inspect.signature(cls).parameters
    first = ({k: defaults[k].default for k in space if k in defaults},)
    final = {"max_train_s": SASREC_FINAL_TRAIN_S}
    return Row("sasrec", space, fit, first=first, fixed=fixed, final=final)


def streamrec_space(recency: bool = True) -> dict[str, Dim]:
    """The space ``streamrec retrain --tune`` searches (``retrain.tuning.SEARCH_SPACE``), so the
    benchmark tunes what production would: the scale-like choices, around the default structure. A
    boost or pop weight of 0 is "off" (a natural end, not an edge of the grid)."""
    space: dict[str, Dim] = {}
    for name, (kind, *args) in SEARCH_SPACE.items():
        if not recency and name in ("recency_boost", "recency_half_life"):
            continue
        if kind == "choice":
            space[name] = Dim(choices=tuple(args))
        else:
            natural_low = name in ("recency_boost", "pop_weight") and args[0] == 0
            space[name] = Dim(args[0], args[1], log=kind != "float", natural_low=natural_low)
    return space


def fit_streamrec(params: Params, fold: Fold) -> ScoreFn:
    """``fit_model`` on the fold's training events; factors above the rank add zero columns only, so
    they are clamped (same scores, less work); trials use an exact index (same scores, no k-means)."""
    assert fold.events is not None
    factors = min(int(params["factors"]), fold.rank)
    settings = settings_for({**params, "factors": factors, "seed": SEED, "exact_search_max_items": NO_ANN})
    return fit_served(fold.split, fold.events, settings).score


def streamrec_rows() -> list[Row]:
    """streamrec and its ablation without the recency boost, searched separately with the same budget;
    each starts from ModelSettings' defaults, and what the search leaves alone (factors, diagonal
    correction, history order) stays at them, as in ``streamrec retrain --tune``."""
    default = settings_for({}).model_dump()
    space = streamrec_space()
    no_recency = streamrec_space(recency=False)
    first = {k: default[k] for k in space}
    # Factors stay at the default: each fit clamps them to its own fold's rank (fit_streamrec), so the
    # refit on all training keeps the rank the smaller validation folds could not have.
    structure = {k: default[k] for k in ("factors", "diag_correction", "history_order")}
    return [
        Row("streamrec", space, fit_streamrec, first=(first,), fixed=structure),
        Row(
            "streamrec_no_recency",
            no_recency,
            fit_streamrec,
            first=({k: v for k, v in first.items() if k in no_recency},),
            fixed={**structure, "recency_boost": 0.0},
        ),
    ]


def ease_recency_row(streamrec_params: Params) -> Row:
    """EASE trained on the input matrix production builds with streamrec's chosen input weighting and
    history order, and scored from the same recency-weighted history streamrec's user tower reads:
    what streamrec adds beyond that input is then its rank, bias and diagonal choice."""
    keys = ("input_weighting", "history_order", "recency_boost", "recency_half_life")
    fixed = {k: streamrec_params[k] for k in keys if k in streamrec_params}
    settings = settings_for(fixed)

    def fit(params: Params, fold: Fold) -> ScoreFn:
        assert fold.events is not None
        inputs, ranks = production_inputs(fold.split, fold.events, settings)
        model = EASE(lam=float(params["lam"]))
        model.fit(inputs)

        def score(rows: np.ndarray) -> np.ndarray:
            history = apply_recency(
                inputs[rows], ranks[rows], settings.recency_boost, settings.recency_half_life
            )
            return model.scores_of(history)

        return score

    return Row("ease_recency", {"lam": Dim(1.0, 1e5, log=True)}, fit, first=({"lam": 200.0},), fixed=fixed)
