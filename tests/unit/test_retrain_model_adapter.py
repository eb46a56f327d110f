"""The Trainer port over the real model package, on a small clustered data set (CPU, a few seconds)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from core.errors import ArtifactError
from core.event_table import EventTable
from core.settings import ModelSettings
from retrain.gate import gate_rankings, holdout_split, ranking_metrics
from retrain.model_adapter import ModelTrainer


def _clustered(n_users: int = 150, n_items: int = 60, per_user: int = 12, seed: int = 3) -> EventTable:
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        own = np.arange(u % 3, n_items, 3)
        for _ in range(per_user):
            users.append(f"u{u}")
            items.append(f"i{int(rng.choice(own))}")
            ts.append(int(rng.integers(0, 10**9)))
    n = len(users)
    return EventTable(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.array(["view"] * n, dtype=str),
        value=np.full(n, np.nan),
        ts_ms=np.array(ts, dtype=np.int64),
    )


@pytest.fixture(scope="module")
def trained() -> tuple[ModelTrainer, object, EventTable]:
    table = _clustered()
    trainer = ModelTrainer(ModelSettings(factors=16, epochs=2))
    epochs: list[tuple[int, int]] = []
    model = trainer.fit(table, on_epoch=lambda e, total, loss: epochs.append((e, total)))
    assert epochs[-1] == (2, 2)
    return trainer, model, table


def test_recommends_unseen_items_from_the_users_cluster(
    trained: tuple[ModelTrainer, object, EventTable],
) -> None:
    trainer, model, table = trained
    users = [f"u{i}" for i in range(30)]
    recs = gate_rankings(model, table, users, 5, trainer.weights)  # type: ignore[arg-type]
    for user in users:
        seen = set(table.item_id[table.user_id == user].tolist())
        assert len(recs[user]) == 5 and not seen & set(recs[user])
    # User u<n> shops in cluster n % 3 (items n % 3, n % 3 + 3, ...): most recommendations come from there.
    in_cluster = sum(int(i[1:]) % 3 == int(u[1:]) % 3 for u in users for i in recs[u])
    assert in_cluster >= 0.8 * 5 * len(users)


def test_files_round_trip_gives_the_same_recommendations(
    trained: tuple[ModelTrainer, object, EventTable],
) -> None:
    trainer, model, table = trained
    files = model.to_files(  # type: ignore[attr-defined]
        3, metrics={"holdout_ndcg@10": 0.5}, data_window={"events": len(table)}, trained_at=datetime.now(UTC)
    )
    assert all(isinstance(v, bytes) for v in files.values())
    loaded = trainer.load(files)
    users = ["u0", "u5", "u9"]
    assert gate_rankings(loaded, table, users, 10, trainer.weights) == gate_rankings(
        model,  # type: ignore[arg-type]
        table,
        users,
        10,
        trainer.weights,
    )


def test_corrupt_files_raise_artifact_error(trained: tuple[ModelTrainer, object, EventTable]) -> None:
    trainer, model, _ = trained
    files = model.to_files(1, metrics={}, data_window={}, trained_at=datetime.now(UTC))  # type: ignore[attr-defined]
    for name in files:
        broken = dict(files)
        broken[name] = b"not an artifact"
        with pytest.raises(ArtifactError):
            trainer.load(broken)
    with pytest.raises(ArtifactError):
        trainer.load({})


def test_beats_a_random_ranking_on_the_gate_protocol() -> None:
    table = _clustered(seed=11)
    split = holdout_split(table, 0.2)
    trainer = ModelTrainer(ModelSettings(factors=16, epochs=1))
    model = trainer.fit(split.train)
    recs = gate_rankings(model, split.histories, split.users, 10, trainer.weights)
    ours = ranking_metrics(recs, split.targets)["ndcg@10"]
    rng = np.random.default_rng(0)
    pool = np.unique(table.item_id)
    rand = ranking_metrics({u: list(rng.permutation(pool)[:10]) for u in split.users}, split.targets)[
        "ndcg@10"
    ]
    assert ours > rand + 0.05


def test_fit_records_its_build_train_and_index_stages() -> None:
    from retrain.stages import StageClock

    clock = StageClock()
    ModelTrainer(ModelSettings(factors=8)).fit(_clustered(n_users=40), stages=clock)
    assert list(clock.stages) == ["build", "train", "index"]
    assert all(s.wall_s > 0 and s.peak_rss_bytes > 0 for s in clock.stages.values())


def _catalog_docs(n_items: int = 60) -> list[dict]:
    brands = ("acme", "zenith", "orbit")
    return [
        {
            "item_id": f"i{i}",
            "title": f"{brands[i % 3]} gadget {i}",
            "category": f"Shop > c{i % 3}",
            "price": 10.0 * (1 + i % 3),
            "properties": {"brand": brands[i % 3]},
        }
        for i in range(n_items)
    ]


def test_fit_with_a_catalog_stores_a_content_model_that_embeds_new_items() -> None:
    from retrain.stages import StageClock

    clock = StageClock()
    trainer = ModelTrainer(ModelSettings(factors=8), catalog=lambda: [_catalog_docs()])
    model = trainer.fit(_clustered(n_users=60), stages=clock)
    assert list(clock.stages) == ["build", "train", "content", "index"]
    assert model.content is not None and model.config["content"]["features"] > 3
    again = trainer.load(model.to_files(3, metrics={}, data_window={}, trained_at=datetime.now(UTC)))
    assert again.content is not None
    new = {
        "item_id": "n1",
        "title": "zenith gadget new",
        "category": "Shop > c1",
        "properties": {"brand": "zenith"},
    }
    vecs = again.content_vectors([new])
    assert vecs is not None and vecs[0].shape == (1, again.dim) and vecs[1].shape == (1, again.dim - 1)
    # Its content embedding lies closest to its own cluster's warm items.
    warm = again.item_vectors([f"i{i}" for i in range(60)])
    top = np.argsort(-(warm[:, :-1] @ vecs[1][0]))[:10]
    assert sum(int(i) % 3 == 1 for i in top) >= 8


def test_content_model_skipped_without_enough_catalog_items() -> None:
    trainer = ModelTrainer(
        ModelSettings(factors=8, content_min_items=50), catalog=lambda: [_catalog_docs(10)]
    )
    assert trainer.fit(_clustered(n_users=40)).content is None
    off = ModelTrainer(ModelSettings(factors=8, content_cold_start=False), catalog=lambda: [_catalog_docs()])
    assert off.fit(_clustered(n_users=40)).content is None
