"""The embedding artifact loader: round trip, both index kinds, corrupt input refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.settings import ModelSettings, Settings
from model.errors import ArtifactError
from serving.embedding_model import INDEX, build_index, load_embedding_model, to_files
from serving.model_loader import make_loader

RECORD = type("R", (), {"version": 3, "metrics": {"ndcg": 0.1}, "trained_at": None})()


def arrays(n: int = 50, dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "item_ids": np.array([f"i{j}" for j in range(n)]),
        "item_emb": rng.normal(size=(n, dim)).astype(np.float32),
        "user_ids": np.array(["u0", "u1"]),
        "user_emb": rng.normal(size=(2, dim)).astype(np.float32),
        "popularity": np.arange(n, dtype=np.float32),
    }


@pytest.mark.parametrize("exact_max", [1000, 10])
def test_round_trip_with_index(exact_max: int) -> None:
    ms = ModelSettings(exact_search_max_items=exact_max)
    data = arrays()
    index, kind = build_index(data["item_emb"], ms)
    loaded = make_loader(Settings(_env_file=None, model=ms))(to_files(data, index), RECORD)  # type: ignore[call-arg]
    assert loaded.index == ("exact" if exact_max == 1000 else "hnsw") == kind
    model = loaded.model
    assert model.n_items == 50 and model.popular_items(2)[0][0] == "i49"
    user = model.user_vector("u0")
    assert user is not None and model.user_vector("nobody") is None
    exact = np.argsort(-(data["item_emb"] @ user))[:5]
    assert [i for i, _ in model.search(user, 5)][:3] == [f"i{j}" for j in exact[:3]]
    assert "i3" not in [i for i, _ in model.similar("i3", 5)]


def test_index_built_at_load_when_absent() -> None:
    model = load_embedding_model(to_files(arrays()), ModelSettings())
    assert model.index_kind == "exact" and len(model.search(model.item_emb[0], 3)) == 3


@pytest.mark.parametrize(
    "files",
    [
        {"embeddings.npz": b"not a zip"},
        {"other": b"x"},
        to_files({**arrays(), "item_emb": np.full((50, 8), np.nan, dtype=np.float32)}),
        to_files({**arrays(), "user_emb": np.zeros((3, 8), dtype=np.float32)}),
        {**to_files(arrays()), INDEX: b"garbage"},
        {
            **to_files(arrays()),
            INDEX: to_files(arrays(n=20), build_index(arrays(n=20)["item_emb"], ModelSettings())[0])[INDEX],
        },
    ],
)
def test_corrupt_or_incompatible_artifacts_are_refused(files: dict[str, Any]) -> None:
    with pytest.raises(ArtifactError):
        make_loader(Settings(_env_file=None))(files, RECORD)  # type: ignore[call-arg]
