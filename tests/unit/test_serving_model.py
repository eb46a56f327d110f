"""Serving loads retrain's ModelArtifact: round trip, both index kinds, corrupt input refused."""

from __future__ import annotations

import json
from typing import Any

import faiss
import numpy as np
import pytest

from core.errors import ArtifactError
from core.settings import ModelSettings, Settings
from model.artifact import ModelArtifact
from model.index import build_index
from model.recency import recency_weights
from serving.model_loader import make_loader

RECORD = type("R", (), {"version": 3, "metrics": {"ndcg": 0.1}, "trained_at": None})()


def artifact(n: int = 50, dim: int = 8, seed: int = 0, index: bool = True, **config: Any) -> ModelArtifact:
    rng = np.random.default_rng(seed)
    item = rng.normal(size=(n, dim)).astype(np.float32)
    item[:, -1] = np.linspace(1.0, 0.0, n, dtype=np.float32)  # bias: i0 most popular
    inputs = rng.normal(size=(n, dim - 1)).astype(np.float32)
    users = np.hstack([rng.normal(size=(2, dim - 1)), np.ones((2, 1))]).astype(np.float32)
    faiss_index = build_index(item, exact_max_items=1000)[0] if index else None
    return ModelArtifact(
        version=3,
        item_ids=np.array([f"i{j}" for j in range(n)]),
        user_ids=np.array(["u0", "u1"]),
        item_embeddings=item,
        user_embeddings=users,
        input_embeddings=inputs,
        config={"recency_boost": 3.0, "recency_half_life": 10.0, **config},
        index_bytes=bytes(faiss.serialize_index(faiss_index).tobytes()) if faiss_index is not None else None,
    )


def load(files: dict[str, bytes], exact_max: int = 200_000) -> Any:
    settings = Settings(_env_file=None, model=ModelSettings(exact_search_max_items=exact_max))  # type: ignore[call-arg]
    return make_loader(settings)(files, RECORD)


@pytest.mark.parametrize("exact_max", [1000, 10])
def test_round_trip_serves_through_the_recommender(exact_max: int) -> None:
    art = artifact()
    loaded = load(art.to_files(), exact_max)
    assert loaded.index == ("exact" if exact_max == 1000 else "hnsw") and loaded.version == "3"
    model = loaded.model
    assert model.n_items == 50 and model.knows_item("i7") and not model.knows_item("nope")
    user = model.user_vector("u0")
    assert user is not None and user[-1] == 1.0 and model.user_vector("nobody") is None
    exact = np.argsort(-(art.item_embeddings @ user))[:5]
    assert [i for i, _ in model.recommend(user, 5)][:3] == [f"i{j}" for j in exact[:3]]
    assert "i3" not in [i for i, _ in model.similar("i3", 5)]
    assert next(i for i, _ in model.recommend(user, 5, exclude={f"i{exact[0]}"})) == f"i{exact[1]}"
    assert model.item_vectors(["i2", "i0"]).tolist() == art.item_embeddings[[2, 0]].tolist()
    assert len(model.popular_items(5)) == 5 and model.popular_items(60)[0][0] == model.popular_items(1)[0][0]


def test_fold_in_applies_the_model_recency_boost_oldest_first() -> None:
    art = artifact()
    model = load(art.to_files()).model
    # The history is oldest first; the unknown item is dropped before the boost is counted.
    got = model.fold_in([("i2", 1.0), ("unknown", 5.0), ("i1", 2.0)])
    boost = recency_weights(2, 3.0, 10.0)
    assert boost[1] > boost[0]
    expected = 1.0 * boost[0] * art.input_embeddings[2] + 2.0 * boost[1] * art.input_embeddings[1]
    assert np.allclose(got[:-1], expected)
    assert got[-1] == 1.0
    assert model.fold_in([("unknown", 1.0)]) is None


def test_index_built_at_load_when_absent() -> None:
    model = load(artifact(index=False).to_files()).model
    assert model.index_kind == "exact" and len(model.recommend(model.item_vectors(["i0"])[0], 3)) == 3


def _corrupt_cases() -> list[dict[str, bytes]]:
    good = artifact().to_files()
    manifest = json.loads(good["manifest.json"])
    bad_format = {**good, "manifest.json": json.dumps({**manifest, "format_version": 99}).encode()}
    truncated = {**good, "item_embeddings.npy": good["item_embeddings.npy"][:-16]}
    other_index = artifact(n=20).to_files()["index.faiss"]
    wrong_index = {**good, "index.faiss": other_index}
    manifest["sha256"]["index.faiss"] = __import__("hashlib").sha256(other_index).hexdigest()
    wrong_index["manifest.json"] = json.dumps(manifest).encode()
    return [
        {"embeddings.npz": b"the old provisional format"},
        {k: v for k, v in good.items() if k != "manifest.json"},
        bad_format,
        truncated,
        wrong_index,
    ]


@pytest.mark.parametrize("files", _corrupt_cases())
def test_corrupt_or_incompatible_artifacts_are_refused(files: dict[str, bytes]) -> None:
    with pytest.raises(ArtifactError):
        load(files)


def test_holder_refuses_a_corrupt_artifact_counts_it_and_keeps_the_old_model() -> None:
    from prometheus_client import CollectorRegistry

    from serving.metrics import ServingMetrics
    from serving.model_holder import ModelHolder
    from storage.model_registry_memory import InMemoryModelRegistry

    registry = InMemoryModelRegistry()
    metrics = ServingMetrics(CollectorRegistry())
    holder = ModelHolder(registry, make_loader(Settings(_env_file=None)), metrics)  # type: ignore[call-arg]
    registry.promote(registry.publish(artifact().to_files(), {}), "good")
    assert holder.poll_once() and holder.current is not None and holder.current.version == "1"
    files = artifact().to_files()
    bad = registry.publish({**files, "user_embeddings.npy": files["user_embeddings.npy"][:40]}, {})
    registry.promote(bad, "corrupt")
    assert not holder.poll_once()
    assert holder.current.version == "1" and str(bad) in holder.refused
    assert metrics.model_load_failures._value.get() == 1
