import io
from pathlib import Path

import numpy as np
import pytest

from core.errors import ArtifactError
from model.artifact import ModelArtifact
from model.index import AnnParams
from model.interactions import build_interactions
from model.lae import TrainConfig
from model.pipeline import train_artifact
from model.trained_model import TrainedModel


def _artifact() -> ModelArtifact:
    rng = np.random.default_rng(0)
    events = [(f"u{rng.integers(40)}", f"i{rng.integers(60)}", "view", None, k) for k in range(800)]
    inter = build_interactions(events)
    return train_artifact(
        inter,
        TrainConfig(factors=8, reg=5.0, device="cpu"),
        version=7,
        metrics={"ndcg@10": 0.1},
        data_window={"from_ms": 0, "to_ms": 799},
    )


def _hnsw_artifact() -> ModelArtifact:
    """120 items with the exact-search limit at 50: retrain builds and calibrates an HNSW index."""
    rng = np.random.default_rng(0)
    events = [(f"u{rng.integers(80)}", f"i{rng.integers(120)}", "view", None, k) for k in range(2000)]
    return train_artifact(
        build_interactions(events),
        TrainConfig(factors=8, reg=5.0, device="cpu"),
        version=1,
        exact_max_items=50,
    )


def _same(a: ModelArtifact, b: ModelArtifact) -> None:
    assert a.version == b.version and a.config == b.config and a.metrics == b.metrics
    assert a.trained_at == b.trained_at and a.data_window == b.data_window
    for name in ("item_ids", "user_ids", "item_embeddings", "user_embeddings", "input_embeddings"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_round_trip_dir_and_files(tmp_path: Path) -> None:
    art = _artifact()
    loaded = ModelArtifact.load(art.save(tmp_path / "a"))
    _same(art, loaded)
    _same(art, ModelArtifact.from_files(art.to_files()))
    for name, data in art.to_files().items():
        if name.endswith(".npy"):  # plain arrays: loadable without pickle
            np.load(io.BytesIO(data), allow_pickle=False)
    rec = TrainedModel(loaded)
    assert rec.version == 7 and rec.n_items == len(art.item_ids)
    user = str(art.user_ids[0])
    vec = rec.user_vector(user)
    assert vec is not None and vec.shape == (art.dim,)
    seen = {"i1", "i2"}
    res = rec.recommend(vec, 5, exclude=seen)
    assert len(res) == 5 and not seen & {item for item, _ in res}
    assert [s for _, s in res] == sorted((s for _, s in res), reverse=True)
    sim = rec.similar(str(art.item_ids[0]), 3)
    assert len(sim) == 3 and str(art.item_ids[0]) not in {i for i, _ in sim}
    assert rec.similar("nope", 3) == [] and not rec.knows_item("nope") and rec.knows_item("i1")
    assert rec.user_vector("nobody") is None


def test_approximate_index_chosen_above_threshold() -> None:
    art = _artifact()
    rec = TrainedModel(art, exact_max_items=5)
    assert type(rec.index).__name__ == "IndexHNSWFlat" and rec.search_effort is not None
    assert len(rec.recommend([("i3", 1.0)], 4)) == 4
    ivf = TrainedModel(art, exact_max_items=5, ann=AnnParams(kind="ivf"))
    assert type(ivf.index).__name__ == "IndexIVFFlat" and ivf.search_effort is not None
    assert len(ivf.recommend([("i3", 1.0)], 4)) == 4


def test_artifact_config_records_the_calibrated_index() -> None:
    art = _hnsw_artifact()
    ann = art.config["ann"]
    assert ann["kind"] == "hnsw" and ann["target_recall"] == 0.95 and ann["calibrated_recall"] >= 0.95
    assert ann["ef_search"] >= 1 and ann["hnsw_m"] == 32 and ann["calibration_queries"] > 0
    rec = TrainedModel(ModelArtifact.from_files(art.to_files()))
    assert rec.index_kind == "hnsw" and rec.search_effort == ann["ef_search"]


def test_missing_file_rejected(tmp_path: Path) -> None:
    path = _artifact().save(tmp_path / "a")
    (path / "user_embeddings.npy").unlink()
    with pytest.raises(ArtifactError, match=r"user_embeddings\.npy is missing"):
        ModelArtifact.load(path)


def test_truncated_npy_rejected(tmp_path: Path) -> None:
    files = dict(_artifact().to_files())
    files["item_embeddings.npy"] = files["item_embeddings.npy"][:100]
    with pytest.raises(ArtifactError, match="corrupt"):
        ModelArtifact.from_files(files)
    files.pop("manifest.json")
    with pytest.raises(ArtifactError, match="manifest"):
        ModelArtifact.from_files(files)


def test_arrays_are_read_in_place_from_the_file_bytes() -> None:
    """A loaded artifact's embeddings are read-only views over the downloaded bytes, not copies (a
    1M-item model would otherwise hold each matrix twice while it loads)."""
    original = _artifact()
    files = dict(original.to_files())
    art = ModelArtifact.from_files(files)
    for name in ("item_embeddings", "user_embeddings", "input_embeddings"):
        arr, owner = getattr(art, name), getattr(art, name).base
        while isinstance(owner, np.ndarray):
            owner = owner.base
        assert owner is files[f"{name}.npy"] and not arr.flags.writeable
    _same(art, original)
    model = TrainedModel(art)  # serving's read side works on read-only arrays
    assert model.recommend(art.user_embeddings[0], 3)


def test_npy_that_does_not_match_its_header_or_holds_objects_is_rejected() -> None:
    from model.artifact import read_npy

    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32))
    with pytest.raises(ArtifactError, match="expected 24 data bytes, found 20"):
        read_npy({"x.npy": buf.getvalue()[:-4]}, "x.npy")
    with pytest.raises(ArtifactError, match=r"not a readable \.npy array"):
        read_npy({"x.npy": b"\x93NUMPY\x09\x00garbage"}, "x.npy")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    with pytest.raises(ArtifactError, match="object arrays"):
        read_npy({"x.npy": header.getvalue() + bytes(8)}, "x.npy")
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    assert read_npy({"x.npy": fortran.getvalue()}, "x.npy").tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_wrong_shape_and_id_map_rejected() -> None:
    art = _artifact()
    with pytest.raises(ArtifactError, match="user_embeddings has shape"):
        ModelArtifact(
            version=1,
            item_ids=art.item_ids,
            user_ids=art.user_ids,
            item_embeddings=art.item_embeddings,
            user_embeddings=art.user_embeddings[:, :3],
            input_embeddings=art.input_embeddings,
        )
    with pytest.raises(ArtifactError, match="item_embeddings has shape"):
        ModelArtifact(
            version=1,
            item_ids=art.item_ids[:-1],
            user_ids=art.user_ids,
            item_embeddings=art.item_embeddings,
            user_embeddings=art.user_embeddings,
            input_embeddings=art.input_embeddings,
        )


def test_unknown_format_version_rejected() -> None:
    import json

    files = dict(_artifact().to_files())
    manifest = json.loads(files["manifest.json"])
    manifest["format_version"] = 99
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(ArtifactError, match="format_version 99"):
        ModelArtifact.from_files(files)


def _with_content(art: ModelArtifact) -> ModelArtifact:
    import dataclasses

    from model.content import ContentFeaturizer

    feat = ContentFeaturizer(min_count=1).fit([{"category": "a"}, {"category": "b"}])
    weights = np.arange(feat.n_features * (2 * art.dim - 1), dtype=np.float32).reshape(feat.n_features, -1)
    return dataclasses.replace(art, content_weights=weights, content_vocab=feat.to_json())


def test_content_model_round_trips_and_format_1_still_loads() -> None:
    import json

    art = _with_content(_artifact())
    files = dict(art.to_files())
    assert json.loads(files["manifest.json"])["format_version"] == 2
    back = ModelArtifact.from_files(files)
    assert back.content_vocab == art.content_vocab
    assert back.content_weights is not None and art.content_weights is not None
    assert np.array_equal(back.content_weights, art.content_weights)
    assert TrainedModel(back).content is not None
    # A format-1 artifact (what earlier releases published: no content files) loads without a content model.
    old = dict(_artifact().to_files())
    manifest = json.loads(old["manifest.json"])
    manifest["format_version"] = 1
    old["manifest.json"] = json.dumps(manifest).encode()
    loaded = ModelArtifact.from_files(old)
    assert loaded.content_weights is None and TrainedModel(loaded).content is None


def test_content_weights_are_checked() -> None:
    import dataclasses

    art = _with_content(_artifact())
    assert art.content_weights is not None
    with pytest.raises(ArtifactError, match="content_weights must be float32"):
        dataclasses.replace(art, content_weights=art.content_weights[:, :-1])
    with pytest.raises(ArtifactError, match="together"):
        dataclasses.replace(art, content_vocab=None)
    files = dict(art.to_files())
    files.pop("content_vocab.json")
    with pytest.raises(ArtifactError, match="missing"):
        ModelArtifact.from_files(files)


def test_files_are_made_when_read_and_match_the_manifest() -> None:
    import hashlib
    import json

    art = _artifact()
    files = art.to_files()
    first, second = files["item_embeddings.npy"], files["item_embeddings.npy"]
    assert first == second and first is not second  # made on each read, not kept
    checksums = json.loads(files["manifest.json"])["sha256"]
    assert set(checksums) == set(files) - {"manifest.json"}
    assert all(hashlib.sha256(files[name]).hexdigest() == digest for name, digest in checksums.items())


def test_a_loaded_model_drops_its_index_bytes_and_still_publishes_its_index() -> None:
    from datetime import UTC, datetime

    art = _hnsw_artifact()
    assert art.index_bytes is not None
    served = TrainedModel(ModelArtifact.from_files(art.to_files()))
    assert served.artifact.index_bytes is None and served.index_kind == "hnsw"
    kept = TrainedModel(art, keep_index_bytes=True)
    assert kept.artifact.index_bytes is art.index_bytes
    stamp = {"metrics": {}, "data_window": {}, "trained_at": datetime.now(UTC)}
    again = TrainedModel(ModelArtifact.from_files(served.to_files(8, **stamp)))
    assert again.index_kind == "hnsw" and again.search_effort == served.search_effort
    user = art.user_embeddings[0]
    assert again.recommend(user, 5) == served.recommend(user, 5) == kept.recommend(user, 5)
