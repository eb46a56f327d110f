"""The retrain orchestration over in-memory twins (event store, registry) and small fake trainers."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from core.errors import ArtifactError
from core.event_table import EventTable
from core.settings import EventWeights
from model.errors import DegenerateModelError
from retrain.pipeline import EpochCallback, RetrainConfig, RetrainFailed, run_retrain
from retrain.stages import StageClock
from storage.event_store_memory import InMemoryEventStore
from storage.model_registry_memory import InMemoryModelRegistry

NOW = datetime(2026, 1, 10, tzinfo=UTC)
# The default store holds 56 evaluable users and 144 held-out events: enough evidence for these minimums.
CONFIG = RetrainConfig(
    window_days=30, holdout_fraction=0.2, gate_tolerance=0.005, gate_min_users=20, gate_min_events=100
)
STRICT = dataclasses.replace(CONFIG, gate_min_users=50, gate_min_events=200)


class PopularityModel:
    """Recommends the most (or, with ``reverse``, the least) popular unseen items."""

    def __init__(self, counts: dict[str, int], reverse: bool = False) -> None:
        self.counts, self.reverse = counts, reverse
        self.trained_on_users: set[str] = set()

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "popularity", "reverse": self.reverse}

    def recommend_batch(
        self, queries: Sequence[Sequence[tuple[str, float]]], k: int, exclude: Sequence[Collection[str]]
    ) -> list[list[tuple[str, float]]]:
        # The gate excludes each user's history, so this ranks unseen items only.
        ranked = sorted(self.counts, key=lambda i: (self.counts[i] if self.reverse else -self.counts[i], i))
        return [[(i, float(self.counts[i])) for i in ranked if i not in seen][:k] for seen in exclude]

    def to_files(
        self, version: int, *, metrics: dict[str, Any], data_window: dict[str, Any], trained_at: datetime
    ) -> dict[str, bytes]:
        return {
            "model.json": orjson.dumps({"version": version, "counts": self.counts, "reverse": self.reverse})
        }


class PopularityTrainer:
    def __init__(self, reverse: bool = False, degenerate: bool = False) -> None:
        self.weights = EventWeights(view=1.0)
        self.reverse, self.degenerate = reverse, degenerate
        self.fitted: list[EventTable] = []

    def fit(
        self, train: EventTable, on_epoch: EpochCallback | None = None, stages: StageClock | None = None
    ) -> PopularityModel:
        self.fitted.append(train)
        if on_epoch:
            on_epoch(1, 1, 0.0)
        if self.degenerate:
            raise DegenerateModelError("training loss became non-finite at epoch 0")
        return PopularityModel(dict(Counter(train.item_id.tolist())), self.reverse)

    def load(self, files: dict[str, bytes]) -> PopularityModel:
        try:
            data = orjson.loads(files["model.json"])
        except (KeyError, orjson.JSONDecodeError) as exc:
            raise ArtifactError(f"bad artifact: {exc}") from exc
        return PopularityModel(data["counts"], data["reverse"])


def _store(n_users: int = 60, per_user: int = 12, seed: int = 0) -> InMemoryEventStore:
    """Skewed item popularity so the popular-first model clearly beats the least-popular-first one."""
    rng = np.random.default_rng(seed)
    store = InMemoryEventStore()
    p = 1.0 / np.arange(1, 51) ** 1.2
    p /= p.sum()
    docs = []
    start = NOW - timedelta(days=5)
    for u in range(n_users):
        items = rng.choice(50, size=per_user, replace=False, p=p)
        for j, item in enumerate(items):
            ts = start + timedelta(minutes=int(rng.integers(0, 5 * 24 * 60)), seconds=j)
            docs.append(
                {
                    "_id": f"e{u}-{j}",
                    "user_id": f"u{u}",
                    "item_id": f"i{item}",
                    "event_type": "view",
                    "ts": ts,
                    "ts_ms": int(ts.timestamp() * 1000),
                    "value": None,
                }
            )
    store.insert_events(docs)
    return store


def test_first_run_publishes_and_promotes_version_1() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    epochs: list[tuple[int, int, float]] = []
    result = run_retrain(
        store, reg, PopularityTrainer(), CONFIG, now=NOW, on_epoch=lambda *a: epochs.append(a)
    )
    assert (result.outcome, result.version, result.n_events) == ("promoted", 1, 720)
    assert epochs == [(1, 1, 0.0)]
    champ = reg.champion()
    assert champ is not None and champ.version == 1 and "no champion yet" in (champ.reason or "")
    assert champ.n_events == 720 and champ.gate["eval_users"] > 0
    assert champ.metrics["holdout_ndcg@10"] == pytest.approx(result.decision.candidate_ndcg)  # type: ignore[union-attr]
    assert champ.data_window["train_events"] < 720


def test_worse_candidate_is_published_as_rejected_and_the_champion_stays() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    result = run_retrain(store, reg, PopularityTrainer(reverse=True), CONFIG, now=NOW)
    assert result.outcome == "rejected" and result.version == 2
    rec = reg.get(2)
    assert rec.status == "rejected" and "worse than the champion" in (rec.reason or "")
    assert rec.gate["champion_version"] == 1 and rec.gate["champion_ndcg"] > rec.gate["candidate_ndcg"]
    assert reg.champion().version == 1  # type: ignore[union-attr]


def test_equal_candidate_is_promoted() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    result = run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    assert result.outcome == "promoted"
    assert reg.champion().version == 2 and reg.get(1).status == "retired"  # type: ignore[union-attr]


def test_degenerate_fit_is_never_published() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    with pytest.raises(RetrainFailed, match="DegenerateModelError"):
        run_retrain(store, reg, PopularityTrainer(degenerate=True), CONFIG, now=NOW)
    assert reg.list() == [] and reg.champion() is None


def test_erased_users_are_excluded_from_training_and_evaluation() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    # Erasure deletes the user's events and records it; events that arrived later are stored again
    # but must still never reach training.
    store.erase_user("u1")
    store.erasures["u2"] = {"_id": "u2"}
    trainer = PopularityTrainer()
    result = run_retrain(store, reg, trainer, CONFIG, now=NOW)
    trained_users = set(trainer.fitted[0].user_id.tolist())
    assert "u1" not in trained_users and "u2" not in trained_users and "u3" in trained_users
    assert result.n_events == 720 - 24
    assert reg.get(1).data_window["erased_users_excluded"] == 2


def test_window_leaves_out_old_events() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    old = NOW - timedelta(days=40)
    store.insert_events(
        [
            {
                "_id": "old",
                "user_id": "u0",
                "item_id": "ancient",
                "event_type": "view",
                "ts": old,
                "ts_ms": int(old.timestamp() * 1000),
                "value": None,
            }
        ]
    )
    trainer = PopularityTrainer()
    run_retrain(store, reg, trainer, CONFIG, now=NOW)
    assert "ancient" not in set(trainer.fitted[0].item_id.tolist())


def test_no_events_is_a_clear_failure() -> None:
    with pytest.raises(RetrainFailed, match="no events"):
        run_retrain(InMemoryEventStore(), InMemoryModelRegistry(), PopularityTrainer(), CONFIG, now=NOW)


def test_corrupt_champion_artifact_does_not_block_a_new_model() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    reg._files[1]["model.json"] = b"garbage"
    result = run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    assert result.outcome == "promoted" and "cannot be loaded" in (reg.get(2).reason or "")


def test_too_little_evidence_publishes_not_judged_and_keeps_the_champion() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    # Even a clearly worse candidate is not rejected on evidence the gate cannot trust: left for review.
    result = run_retrain(store, reg, PopularityTrainer(reverse=True), STRICT, now=NOW)
    assert result.outcome == "not_judged" and result.version == 2
    rec = reg.get(2)
    assert rec.status == "not_judged" and "not judged" in (rec.reason or "")
    assert reg.champion().version == 1  # type: ignore[union-attr]
    assert rec.gate["judged"] is False and rec.gate["decision"] == "not_judged"
    assert (rec.gate["eval_users"], rec.gate["eval_events"]) == (56, 144)
    assert (rec.gate["min_users"], rec.gate["min_events"]) == (50, 200)
    assert rec.gate["champion_ndcg"] is not None and rec.gate["candidate_ndcg"] is not None


def test_first_model_with_too_little_evidence_becomes_champion_marked_not_judged() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    result = run_retrain(store, reg, PopularityTrainer(), STRICT, now=NOW)
    assert result.outcome == "promoted"
    champ = reg.champion()
    assert champ is not None and champ.version == 1 and champ.status == "champion"
    assert champ.gate["judged"] is False and "not judged" in (champ.reason or "")


def test_enough_evidence_is_judged_and_recorded() -> None:
    store, reg = _store(), InMemoryModelRegistry()
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    gate = reg.get(2).gate
    assert gate["judged"] is True and gate["decision"] == "promoted" and gate["eval_events"] == 144


def test_a_new_version_is_marked_with_the_erasures_it_was_trained_without() -> None:
    from storage.model_erasure import erasure_digest

    store, reg = _store(), InMemoryModelRegistry()
    store.erase_user("u3")
    run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW)
    assert reg.get(1).erasure["digest"] == erasure_digest({"u3"})


def test_the_run_reports_wall_time_and_peak_rss_per_stage_with_the_read_apart() -> None:
    result = run_retrain(_store(), InMemoryModelRegistry(), PopularityTrainer(), CONFIG, now=NOW)
    report = result.run_report
    # The fake trainer records no stages of its own; the model adapter adds build, train and index.
    assert list(report["stages"]) == ["read", "scrub", "split", "gate", "publish"]
    for figures in report["stages"].values():
        assert figures["wall_s"] >= 0.0 and figures["peak_rss_mib"] > 0.0
    stages = report["stages"]
    assert report["read_s"] == pytest.approx(stages["read"]["wall_s"], abs=1e-3)
    after = sum(f["wall_s"] for name, f in stages.items() if name != "read")
    assert report["after_read_s"] == pytest.approx(after, abs=5e-3)
    assert report["peak_rss_mib"] == max(f["peak_rss_mib"] for f in stages.values())


def test_files_beside_the_model_are_read_through_and_win_a_shared_name() -> None:
    from retrain.pipeline import FilesBeside

    files = FilesBeside({"a.npy": b"1", "b.json": b"2"}, {"b.json": b"extra", "c.json": b"3"})
    assert dict(files) == {"a.npy": b"1", "b.json": b"extra", "c.json": b"3"}
    assert len(files) == 3 and sorted(files) == ["a.npy", "b.json", "c.json"]
