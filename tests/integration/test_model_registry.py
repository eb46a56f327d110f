"""The MongoDB model registry against a real MongoDB-wire server: GridFS, disk cache, promotion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import ArtifactError
from core.settings import Settings
from storage.errors import ArtifactUnavailable, RegistryError
from storage.model_registry import BUCKET, sha256_hex
from storage.model_registry_mongo import MongoModelRegistry, open_model_registry

# Bigger than one GridFS chunk (255 KiB) so chunking is exercised.
FILES = {"embeddings.npy": bytes(range(256)) * 2000, "meta.json": b'{"format": 1}'}


@pytest.fixture
def registry(settings: Settings) -> Iterator[MongoModelRegistry]:
    reg = open_model_registry(settings)
    yield reg
    reg.close()


def test_publish_and_load_round_trip_through_gridfs_and_cache(
    registry: MongoModelRegistry, settings: Settings
) -> None:
    v = registry.publish(FILES, {"metrics": {"ndcg@10": 0.2}, "n_events": 5, "config": {"factors": 8}})
    assert v == 1 and registry.next_version() == 2
    rec = registry.get(v)
    assert rec.status == "candidate" and rec.n_events == 5 and rec.config == {"factors": 8}
    assert {f.name: (f.sha256, f.size) for f in rec.files} == {
        n: (sha256_hex(d), len(d)) for n, d in FILES.items()
    }
    assert registry.load_files(v) == FILES
    cached = settings.model.artifact_cache_dir / "v1" / "embeddings.npy"
    assert cached.read_bytes() == FILES["embeddings.npy"]

    # A second registry (another serving host) with an empty cache downloads the same bytes.
    other = MongoModelRegistry(registry._db, settings.model.artifact_cache_dir.parent / "other-cache")
    assert other.load_files(v) == FILES
    assert [r.version for r in other.list()] == [1]


def test_cache_with_wrong_bytes_is_re_downloaded(registry: MongoModelRegistry, settings: Settings) -> None:
    v = registry.publish(FILES, {})
    registry.load_files(v)
    cached = settings.model.artifact_cache_dir / f"v{v}" / "meta.json"
    cached.write_bytes(b"stale or tampered")
    assert registry.load_files(v) == FILES
    assert cached.read_bytes() == FILES["meta.json"]


def test_altered_stored_file_is_a_clear_error(registry: MongoModelRegistry, mongo_db: Any) -> None:
    v = registry.publish(FILES, {})
    stored = mongo_db[f"{BUCKET}.files"].find_one({"metadata.version": v, "metadata.name": "embeddings.npy"})
    mongo_db[f"{BUCKET}.chunks"].update_one(
        {"files_id": stored["_id"], "n": 0}, {"$set": {"data": b"x" * 261120}}
    )
    with pytest.raises(ArtifactUnavailable, match=r"v1: artifact file 'embeddings.npy'.*sha256") as info:
        registry.load_files(v)
    assert isinstance(info.value, ArtifactError)

    mongo_db[f"{BUCKET}.chunks"].delete_many({"files_id": stored["_id"]})
    with pytest.raises(ArtifactUnavailable, match="missing or truncated"):
        registry.load_files(v)


def test_promote_reject_and_rollback(registry: MongoModelRegistry) -> None:
    v1, v2, v3 = (registry.publish(FILES, {"reason": f"r{i}"}) for i in range(3))
    assert registry.champion() is None
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    registry.promote(v1, "first")
    registry.promote(v2, "better")
    registry.reject(v3, "worse")
    statuses = {r.version: r.status for r in registry.list()}
    assert statuses == {v1: "retired", v2: "champion", v3: "rejected"}
    assert registry.champion().version == v2  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="is the champion"):
        registry.reject(v2, "no")

    restored = registry.rollback("regression in production")
    assert restored.version == v1 and restored.status == "champion"
    assert registry.get(v2).status == "retired" and "rolled back to v1" in (registry.get(v2).reason or "")
    assert registry.champion().version == v1  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()


@pytest.mark.parametrize("kind", ["mongo", "twin"])
def test_online_evidence_is_recorded_on_the_version(kind: str, registry: MongoModelRegistry) -> None:
    """``record_online_evidence``: the same on MongoDB and the twin (replaced whole, read back as stored)."""
    from storage.errors import ModelNotFound
    from storage.model_registry_memory import InMemoryModelRegistry

    reg: Any = registry if kind == "mongo" else InMemoryModelRegistry()
    v = reg.publish(FILES, {})
    assert reg.get(v).online == {}
    first = {
        "experiment_id": "e1",
        "report": {"variants": [{"name": "b", "ctr": 0.12, "ctr_ci95": [0.1, 0.14]}]},
    }
    assert reg.record_online_evidence(v, first).online == first
    reg.promote(v, "won e1")
    second = {"experiment_id": "e2", "forced": True}
    reg.record_online_evidence(v, second)
    record = reg.get(v)
    assert record.online == second and record.status == "champion" and record.reason == "won e1"
    assert [r.online for r in reg.list()] == [second]
    with pytest.raises(ModelNotFound):
        reg.record_online_evidence(v + 100, {})
