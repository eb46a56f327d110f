"""The one hyper-parameter search every model of the quality benchmark gets: seeded Optuna TPE, the
same number of trials for each, over ranges declared per model, with a check for chosen values that sit
on the edge of their range (a sign the range, not the model, decided).

A ``Dim`` is one range. Its ends may be *natural*: a recency boost of 0 (off) or a factor count equal to
the data's rank are real limits of the model, not of the grid, so a choice there is not reported as an
edge.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

logger = logging.getLogger(__name__)

Params = dict[str, Any]
# A choice within this share of a range's width (in the range's own scale, log for log ranges) from an
# end counts as on the edge: TPE samples continuously and rarely hits an end exactly.
EDGE_SHARE = 0.05


@dataclass(frozen=True)
class Dim:
    """One searched parameter: a float or int range (``log`` for scale-like ones) or a set of choices."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()
    natural_low: bool = False  # the low end is a limit of the model (e.g. 0 = off), not of the grid
    natural_high: bool = False

    def __post_init__(self) -> None:
        if not self.choices and not self.low < self.high:
            raise ValueError(f"a range needs low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        return isinstance(value, int | float) and self.low <= float(value) <= self.high

    def edge(self, value: Any) -> str | None:
        """'low' or 'high' when ``value`` sits on an end of the range that is not natural, else None."""
        if self.choices:
            return None  # unordered choices have no edge
        scale: Callable[[float], float] = math.log if self.log else float
        lo, hi, v = scale(self.low), scale(self.high), scale(float(value))
        margin = EDGE_SHARE * (hi - lo)
        if v <= lo + margin and not self.natural_low:
            return "low"
        if v >= hi - margin and not self.natural_high:
            return "high"
        return None


Space = Mapping[str, Dim]


@dataclass
class SearchResult:
    params: Params  # the best trial's parameters (plus the fixed ones)
    value: float  # its objective (mean validation NDCG@10)
    trials: int  # trials run (each one objective evaluation)
    edge_params: list[str] = field(default_factory=list)  # "name=value (low|high edge of [a, b])"
    history: list[tuple[Params, float]] = field(default_factory=list)


def edge_report(space: Space, params: Params) -> list[str]:
    out = []
    for name, dim in space.items():
        side = dim.edge(params[name]) if name in params else None
        if side is not None:
            out.append(f"{name}={params[name]:g} ({side} edge of [{dim.low:g}, {dim.high:g}])")
    return out


def search(
    objective: Callable[[Params], float],
    space: Space,
    trials: int,
    seed: int = 42,
    fixed: Params | None = None,
    first: Sequence[Params] = (),
) -> SearchResult:
    """Maximise ``objective`` over ``space`` with ``trials`` evaluations of seeded TPE.

    ``first`` are trials enqueued before TPE's own (a known-good default, so a small budget never does
    worse than it); they count against ``trials``. An empty space is evaluated once (``trials`` = 1).
    Ties keep the earlier trial. ``fixed`` parameters are passed to every evaluation and returned."""
    fixed = dict(fixed or {})
    if not space:
        value = float(objective(fixed))
        return SearchResult(params=fixed, value=value, trials=1, history=[(fixed, value)])
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, trials // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params in first[:trials]:
        # A default outside a range (e.g. weight decay 0 on a log range) is left to the sampler.
        study.enqueue_trial({k: v for k, v in params.items() if k in space and space[k].contains(v)})
    history: list[tuple[Params, float]] = []

    def run(trial: optuna.Trial) -> float:
        params = {name: dim.suggest(trial, name) for name, dim in space.items()}
        value = float(objective({**fixed, **params}))
        history.append((params, value))
        logger.info("search_trial n=%d params=%s value=%.5f", trial.number, params, value)
        return value if math.isfinite(value) else -1.0

    try:
        study.optimize(run, n_trials=trials)
    finally:
        optuna.logging.set_verbosity(previous)
    best_i = max(range(len(history)), key=lambda i: (history[i][1], -i))
    best_params, best_value = history[best_i]
    return SearchResult(
        params={**fixed, **best_params},
        value=best_value,
        trials=len(history),
        edge_params=edge_report(space, best_params),
        history=history,
    )
