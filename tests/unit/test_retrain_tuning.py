"""``retrain --tune`` (retrain.tuning) on small synthetic data: the search, its record, and how later
retrains use it (operator settings win)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.settings import ModelSettings, Settings
from retrain.pipeline import RetrainConfig
from retrain.tuning import (
    TUNABLE,
    TuningFailed,
    at_edges,
    effective_settings,
    run_tuning,
    tune_due,
    tune_settings,
    tuning_split,
)
from storage.errors import RegistryError
from storage.event_store_memory import InMemoryEventStore
from storage.tuned_configs import MemoryTunedConfigs

NOW = datetime(2026, 3, 1, tzinfo=UTC)
CONFIG = RetrainConfig(
    window_days=None, holdout_fraction=0.2, gate_tolerance=0.0, gate_min_users=10, gate_min_events=20
)


def _store(n_users: int = 90, per_user: int = 16, n_items: int = 45, seed: int = 1) -> InMemoryEventStore:
    """Three clusters of shoppers, each browsing its own third of the catalog over ten days."""
    rng = np.random.default_rng(seed)
    docs = []
    start = NOW - timedelta(days=10)
    for u in range(n_users):
        own = np.arange(u % 3, n_items, 3)
        for j in range(per_user):
            ts = start + timedelta(minutes=int(rng.integers(0, 10 * 24 * 60)), seconds=j)
            kind = str(rng.choice(["view", "click", "purchase"], p=[0.7, 0.2, 0.1]))
            docs.append(
                {
                    "_id": f"e{u}-{j}",
                    "user_id": f"u{u}",
                    "item_id": f"i{int(rng.choice(own))}",
                    "event_type": kind,
                    "ts": ts,
                    "ts_ms": int(ts.timestamp() * 1000),
                    "value": None,
                }
            )
    store = InMemoryEventStore()
    store.insert_events(docs)
    return store


def _base() -> ModelSettings:
    return ModelSettings(factors=16, reg=10_000.0, recency_boost=0.0)


def test_tuning_records_a_config_no_worse_than_the_operators_on_validation() -> None:
    store, tuned_store = _store(), MemoryTunedConfigs()
    tuned = run_tuning(store, tuned_store, _base(), CONFIG, budget_s=120.0, trials=6, now=NOW)
    assert tuned_store.latest() == tuned and tuned.seq == 1
    assert set(tuned.params) == set(TUNABLE)
    assert tuned.trials == 6 and tuned.budget_s == 120.0
    assert tuned.baseline_score is not None and tuned.score >= tuned.baseline_score
    assert tuned.validation["users"] >= 10 and tuned.validation["search_space"]["reg"][2] == 10_000.0
    assert tuned.data_window["until"] == NOW.isoformat()


def test_the_search_is_seeded() -> None:
    split = tuning_split(_table_of(_store()), CONFIG)
    one = tune_settings(split, _base(), budget_s=120.0, trials=4)
    two = tune_settings(split, _base(), budget_s=120.0, trials=4)
    assert one.params == two.params and one.score == pytest.approx(two.score)


def test_validation_never_sees_the_gates_held_out_events() -> None:
    table = _table_of(_store())
    split = tuning_split(table, CONFIG)
    gate_cut = np.sort(table.ts_ms)[int(len(table) * (1 - CONFIG.holdout_fraction))]
    assert split.histories.ts_ms.max() < gate_cut
    assert split.train.ts_ms.max() < split.cut_ms < gate_cut


def test_budget_stops_the_search() -> None:
    split = tuning_split(_table_of(_store()), CONFIG)
    result = tune_settings(split, _base(), budget_s=0.01, trials=50)
    assert result.trials == 1  # the operator's settings always run; nothing starts after the budget


def test_too_little_data_is_a_clear_failure_and_records_nothing() -> None:
    tuned_store = MemoryTunedConfigs()
    with pytest.raises(TuningFailed, match="too little data to tune"):
        run_tuning(_store(n_users=6), tuned_store, _base(), CONFIG, budget_s=10.0, trials=2, now=NOW)
    with pytest.raises(TuningFailed, match="no events"):
        run_tuning(InMemoryEventStore(), tuned_store, _base(), CONFIG, budget_s=10.0, trials=2, now=NOW)
    assert tuned_store.latest() is None


def test_operator_settings_win_over_the_tuned_config(monkeypatch: pytest.MonkeyPatch) -> None:
    tuned = MemoryTunedConfigs().record(
        {"params": {"factors": 64, "reg": 50.0, "input_weighting": "log", "unknown": 1}, "score": 0.3}
    )
    monkeypatch.setenv("STREAMREC_MODEL__REG", "300")
    settings = Settings(_env_file=None).model  # type: ignore[call-arg]
    effective = effective_settings(settings, tuned)
    # factors is no longer tuned (a record from the earlier, wider search): the setting stays.
    assert (effective.factors, effective.input_weighting) == (512, "log")
    assert effective.reg == 300.0  # set by the operator, even to the default value
    assert effective_settings(settings, None) is settings


def test_an_invalid_tuned_value_is_ignored() -> None:
    tuned = MemoryTunedConfigs().record({"params": {"factors": 1}, "score": 0.1})
    assert effective_settings(ModelSettings(), tuned) == ModelSettings()


def test_schedule() -> None:
    store = MemoryTunedConfigs()
    assert not tune_due(None, None)
    assert tune_due(None, 86400.0)
    tuned = store.record({"params": {"factors": 64}, "score": 0.2})
    assert not tune_due(tuned, 86400.0, now=tuned.created_at + timedelta(hours=23))
    assert tune_due(tuned, 86400.0, now=tuned.created_at + timedelta(hours=24))


def test_edges_are_reported() -> None:
    space = {"reg": ("float_log", 1.0, 10_000.0), "pop_weight": ("float", 0.0, 0.5), "x": ("choice", 1, 2)}
    assert at_edges({"reg": 10_000.0, "pop_weight": 0.2, "x": 1}, space) == ["reg"]
    assert at_edges({"reg": 100.0, "pop_weight": 0.0}, space) == ["pop_weight"]


def test_the_twin_refuses_a_bad_record() -> None:
    store = MemoryTunedConfigs()
    with pytest.raises(RegistryError, match="finite validation score"):
        store.record({"params": {"factors": 64}, "score": float("nan")})
    with pytest.raises(RegistryError, match="unknown tuned-config fields"):
        store.record({"params": {"factors": 64}, "score": 0.1, "oops": 1})


def _table_of(store: InMemoryEventStore):  # type: ignore[no-untyped-def]
    from retrain.event_source import read_window

    return read_window(store, None, NOW, set())
