"""The retrain loop's tuning schedule (cli.retrain_tune.Tuning) over the twins: when it tunes and which
settings each run trains with."""

from __future__ import annotations

import pytest

from cli.retrain_tune import Tuning
from core.settings import ModelSettings, RetrainSettings, Settings
from retrain.pipeline import RetrainConfig
from storage.event_store_memory import InMemoryEventStore
from storage.tuned_configs import MemoryTunedConfigs, TunedConfig
from tests.unit.test_retrain_tuning import CONFIG, _store


def _tuning(
    store: MemoryTunedConfigs, *, every: str | None, first: bool, events: InMemoryEventStore
) -> Tuning:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        model=ModelSettings(factors=16),
        retrain=RetrainSettings(tune_every=every, tune_trials=2, tune_budget_s=60.0),
    )
    return Tuning(settings, events, store, CONFIG, budget_s=None, trials=None, first=first)


def test_scheduled_tuning_runs_when_due_and_runs_train_with_it() -> None:
    store = MemoryTunedConfigs()
    tuning = _tuning(store, every="24h", first=False, events=_store())
    settings = tuning.model_settings()
    tuned = store.latest()
    assert tuned is not None and tuned.trials == 2
    assert settings.factors == 16  # set by the operator (here: in code, as the environment would)
    assert settings.reg == tuned.params["reg"]
    tuning.model_settings()  # not due again within the day
    assert [r.seq for r in store.list()] == [1]


def test_no_schedule_no_tuning_but_the_stored_config_applies() -> None:
    store = MemoryTunedConfigs()
    recorded = store.record({"params": {"reg": 77.0, "recency_boost": 1.5}, "score": 0.2})
    tuning = _tuning(store, every=None, first=False, events=_store())
    settings = tuning.model_settings()
    assert (settings.reg, settings.recency_boost) == (77.0, 1.5)
    assert store.latest() == recorded


def test_a_failed_scheduled_tuning_keeps_the_previous_config(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryTunedConfigs()
    old: TunedConfig = store.record({"params": {"reg": 55.0}, "score": 0.2})
    monkeypatch.setattr("retrain.tuning.tune_due", lambda tuned, every_s, now=None: True)
    tuning = _tuning(store, every="1h", first=False, events=InMemoryEventStore())  # nothing to tune on
    assert tuning.model_settings().reg == 55.0
    assert store.latest() == old


def test_config_carries_the_budget() -> None:
    tuning = _tuning(MemoryTunedConfigs(), every="7d", first=True, events=_store())
    assert (tuning.budget_s, tuning.trials, tuning.every_s) == (60.0, 2, 7 * 86400.0)
    assert isinstance(tuning.config, RetrainConfig)
