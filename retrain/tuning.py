"""``streamrec retrain --tune``: choose the modelling settings on the store's own recent events.

A storefront has nobody to tune its model, so retrain does: a seeded Optuna TPE search over the
``ModelSettings`` modelling fields (``TUNABLE``), each trial trained by ``model.pipeline.fit_model`` (the
path retrain ships) and scored with the retrain gate's protocol (``retrain.gate``: fold in each user's
history, rank unseen items, NDCG@10 against their new items).

Validation never touches the events the gate judges on: the window is cut as the gate cuts it (its last
``holdout_fraction`` of events by time is the gate's), and the validation split is the same temporal cut
made again inside the part before (tuning trains on the earlier part and is scored on the later one).
The operator's current settings are the first trial, so the chosen configuration never scores below them
on validation. The result is recorded in the registry (``storage.tuned_configs``) and later retrains use
it through ``effective_settings``: a field the operator set explicitly (``STREAMREC_MODEL__<FIELD>`` in
the environment or ``.env``) always wins over the tuned value.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from core.errors import ModelError, StreamrecError
from core.event_table import EventTable
from core.settings import ModelSettings
from model.history_weighting import WEIGHTINGS
from model.pipeline import fit_model
from retrain.event_source import EventSource, read_window
from retrain.gate import GATE_K, HoldoutSplit, NotEnoughData, gate_rankings, holdout_split, ranking_metrics
from retrain.pipeline import RetrainConfig
from storage.tuned_configs import TunedConfig, TunedConfigs

log = logging.getLogger(__name__)

# kind, then the choices or (low, high); "log" ranges are sampled on a log scale.
# Light tuning around the defaults: the model's structure (factors, diagonal correction, history order)
# stays at the operator's settings and only the scale-like choices that depend on the store's data are
# searched. With about a dozen trials on two small validation folds, the earlier eight-dimensional
# search (factors and structure included) overfitted them: it chose ranks near 16 that lost on test to
# the full-rank closed form it could have kept (bench quality, BENCHMARKS.md, issue 12).
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "reg": ("float_log", 10.0, 10_000.0),
    "recency_boost": ("float", 0.0, 15.0),
    "recency_half_life": ("float_log", 1.0, 100.0),
    "pop_weight": ("float", 0.0, 1.0),
    "input_weighting": ("choice", *WEIGHTINGS),
}
TUNABLE = tuple(SEARCH_SPACE)
# A chosen numeric value this close to a bound (as a fraction of the range, log range for log scales)
# is reported as at the edge: a wider range might have done better.
EDGE = 0.02


class TuningFailed(StreamrecError):
    """Nothing could be tuned (too little data, every trial failed); nothing was recorded."""


@dataclass(frozen=True)
class TuneResult:
    params: dict[str, Any]
    score: float
    baseline_score: float | None
    trials: int
    duration_s: float
    validation: dict[str, Any] = field(default_factory=dict)

    def record(self, budget_s: float, data_window: dict[str, Any]) -> dict[str, Any]:
        """The ``storage.tuned_configs`` record of this result."""
        return {
            "params": self.params,
            "score": self.score,
            "baseline_score": self.baseline_score,
            "trials": self.trials,
            "budget_s": budget_s,
            "duration_s": round(self.duration_s, 3),
            "validation": self.validation,
            "data_window": data_window,
        }


def _suggest(trial: Any, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind == "choice":
            out[name] = trial.suggest_categorical(name, list(args))
        elif kind == "int_log":
            out[name] = int(trial.suggest_int(name, args[0], args[1], log=args[1] > args[0]))
        else:
            out[name] = float(trial.suggest_float(name, args[0], args[1], log=kind == "float_log"))
    return out


def at_edges(params: dict[str, Any], space: dict[str, tuple[Any, ...]]) -> list[str]:
    """Numeric parameters whose chosen value sits at a bound of its range."""
    edges = []
    for name, (kind, *args) in space.items():
        if kind == "choice" or name not in params or args[1] <= args[0]:
            continue
        scale: Callable[[float], float] = math.log if kind != "float" else float
        low, high, value = scale(max(args[0], 1e-12)), scale(args[1]), scale(max(params[name], 1e-12))
        if min(value - low, high - value) <= EDGE * (high - low):
            edges.append(name)
    return edges


def validation_score(split: HoldoutSplit, settings: ModelSettings) -> float:
    """NDCG@10 of a model trained on ``split.train`` by the gate's protocol."""
    model = fit_model(split.train, settings).model
    recs = gate_rankings(model, split.histories, split.users, GATE_K, settings.weights)
    return ranking_metrics(recs, split.targets)[f"ndcg@{GATE_K}"]


def _with(base: ModelSettings, params: dict[str, Any]) -> ModelSettings:
    return ModelSettings.model_validate({**base.model_dump(), **params})


def tune_settings(
    split: HoldoutSplit,
    base: ModelSettings,
    *,
    budget_s: float,
    trials: int,
    seed: int | None = None,
) -> TuneResult:
    """Search ``TUNABLE`` on ``split`` for at most ``trials`` trials, starting none after ``budget_s``
    seconds (the trial in flight finishes); ``base``'s own values are the first trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dict(SEARCH_SPACE)
    sampler = optuna.samplers.TPESampler(seed=base.seed if seed is None else seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    start_params = {k: getattr(base, k) for k in TUNABLE}
    study.enqueue_trial(start_params)

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        started = time.perf_counter()
        try:
            score = validation_score(split, _with(base, params))
        except ModelError as exc:
            log.info("tune_trial_failed trial=%d params=%s error=%s", trial.number, params, exc)
            raise optuna.TrialPruned(str(exc)) from exc
        log.info(
            "tune_trial trial=%d val_ndcg10=%.4f fit_s=%.1f params=%s",
            trial.number,
            score,
            time.perf_counter() - started,
            params,
        )
        return score

    started = time.monotonic()
    study.optimize(objective, n_trials=trials, timeout=budget_s, gc_after_trial=True)
    duration = time.monotonic() - started
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise TuningFailed(f"no tuning trial finished in {duration:.0f}s ({len(study.trials)} failed)")
    best = study.best_trial
    first = study.trials[0]
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.params.items()}
    edges = at_edges(params, space)
    if edges:
        log.warning("tune_at_edge params=%s (a wider search range might do better)", edges)
    return TuneResult(
        params=params,
        score=float(best.value if best.value is not None else math.nan),
        baseline_score=float(first.value) if first.value is not None else None,
        trials=len(study.trials),
        duration_s=duration,
        validation={
            "protocol": "retrain gate's temporal holdout, made inside the gate's training window",
            "users": len(split.targets),
            "events": split.eval_events,
            "train_events": len(split.train),
            "cut_ms": split.cut_ms,
            "completed_trials": len(done),
            "at_edge": edges,
            "search_space": {k: list(v) for k, v in space.items()},
            "sampler": f"optuna TPE seed {base.seed if seed is None else seed}",
        },
    )


def tuning_split(table: EventTable, config: RetrainConfig) -> HoldoutSplit:
    """The gate's training window (its holdout cut off), cut again the same way for validation."""
    try:
        gate_train = holdout_split(table, config.holdout_fraction, None, config.gate_max_users).train
        split = holdout_split(gate_train, config.holdout_fraction, None, config.gate_max_users)
    except NotEnoughData as exc:
        raise TuningFailed(f"too little data to tune: {exc}") from exc
    if len(split.targets) < config.gate_min_users or split.eval_events < config.gate_min_events:
        raise TuningFailed(
            f"too little data to tune: {len(split.targets)} validation users and {split.eval_events} "
            f"events, below the gate's minimum of {config.gate_min_users} users and "
            f"{config.gate_min_events} events"
        )
    return split


def run_tuning(
    source: EventSource,
    store: TunedConfigs,
    base: ModelSettings,
    config: RetrainConfig,
    *,
    budget_s: float,
    trials: int,
    now: datetime | None = None,
) -> TunedConfig:
    """Read the retrain window, tune on it and record the result; raises ``TuningFailed``."""
    now = now or datetime.now(UTC)
    since = None if config.window_days is None else now - timedelta(days=config.window_days)
    table = read_window(source, since, now, source.erased_users())
    if len(table) == 0:
        raise TuningFailed("no events in the retrain window; nothing to tune on")
    split = tuning_split(table, config)
    del table
    result = tune_settings(split, base, budget_s=budget_s, trials=trials)
    window = {
        "since": since.isoformat() if since else None,
        "until": now.isoformat(),
        "train_until_ms": int(split.train.ts_ms.max()),
    }
    tuned = store.record(result.record(budget_s, window))
    log.info(
        "tune_done seq=%d val_ndcg10=%.4f baseline=%s trials=%d duration_s=%.0f params=%s",
        tuned.seq,
        tuned.score,
        "-" if tuned.baseline_score is None else f"{tuned.baseline_score:.4f}",
        tuned.trials,
        result.duration_s,
        tuned.params,
    )
    return tuned


def effective_settings(settings: ModelSettings, tuned: TunedConfig | None) -> ModelSettings:
    """``settings`` with the tuned values of every ``TUNABLE`` field the operator did not set.

    "Set" means present in the environment or ``.env`` (pydantic's ``model_fields_set``): a value equal
    to the default still counts as the operator's choice. An unusable tuned record is ignored (logged)."""
    if tuned is None:
        return settings
    explicit = settings.model_fields_set
    updates = {k: v for k, v in tuned.params.items() if k in TUNABLE and k not in explicit}
    if not updates:
        return settings
    try:
        return _with(settings, updates)
    except ValidationError as exc:
        log.warning("tuned_config_ignored seq=%d error=%s", tuned.seq, exc)
        return settings


def tune_due(tuned: TunedConfig | None, every_s: float | None, now: datetime | None = None) -> bool:
    """Whether the scheduled tuning (``retrain.tune_every``) should run now."""
    if every_s is None:
        return False
    if tuned is None:
        return True
    return ((now or datetime.now(UTC)) - tuned.created_at).total_seconds() >= every_s
