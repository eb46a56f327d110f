"""Erasure reaches every stored model version in MongoDB (GridFS) and the local artifact cache, and
`streamrec model promote|rollback` re-apply erasures to the version they bring back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli.retrain_cmd  # noqa: F401  (registers the commands)
from cli.app import app
from core.settings import Settings
from model.artifact_erasure import scrub_files
from storage.event_store import MongoEventStore
from storage.model_erasure import scrub_registry
from storage.model_registry import BUCKET
from storage.model_registry_mongo import open_model_registry
from tests.unit.test_retrain_erasure import USERS, artifact_files

ERASED = "carol"


def _needles(user: str) -> tuple[bytes, bytes]:
    return user.encode("utf-8"), user.encode("utf-32-le")


def _gridfs_holds(mongo_db: Any, user: str) -> list[str]:
    """Every GridFS file (any version, any name) whose bytes contain the id."""
    import gridfs

    bucket = gridfs.GridFSBucket(mongo_db, bucket_name=BUCKET)
    hits = []
    for stored in bucket.find({}):
        data = bucket.open_download_stream(stored._id).read()
        if any(n in data for n in _needles(user)):
            hits.append(f"v{stored.metadata['version']}/{stored.filename}")
    return hits


def _cache_holds(cache_dir: Path, user: str) -> list[str]:
    return [
        str(p.relative_to(cache_dir))
        for p in cache_dir.rglob("*")
        if p.is_file() and any(n in p.read_bytes() for n in _needles(user))
    ]


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STREAMREC_MONGO__URI", settings.mongo.uri.get_secret_value())
    monkeypatch.setenv("STREAMREC_MONGO__DATABASE", settings.mongo.database)
    monkeypatch.setenv("STREAMREC_MODEL__ARTIFACT_CACHE_DIR", str(settings.model.artifact_cache_dir))
    return settings


def test_erased_user_leaves_every_stored_version_and_the_cache(env: Settings, mongo_db: Any) -> None:
    cache = Path(env.model.artifact_cache_dir)
    registry = open_model_registry(env)
    store = MongoEventStore.from_settings(env.mongo)
    try:
        for v in (1, 2):
            registry.publish(artifact_files(v, seed=v), {}, version=v)
            registry.promote(v, "test")
            registry.load_files(v)  # both versions are now in the disk cache too
        assert registry.get(1).status == "retired"
        assert _gridfs_holds(mongo_db, ERASED) and _cache_holds(cache, ERASED)

        store.erase_user(ERASED)
        runner = CliRunner()
        # Promoting the retired v1 again scrubs it before it serves.
        promoted = runner.invoke(app, ["model", "promote", "1", "--reason", "back"])
        assert promoted.exit_code == 0, promoted.output
        assert registry.champion().version == 1  # type: ignore[union-attr]
        assert not [h for h in _gridfs_holds(mongo_db, ERASED) if h.startswith("v1/")]
        assert not [h for h in _cache_holds(cache, ERASED) if h.startswith("v1/")]

        # The retrain loop's housekeeping scrubs the rest (v2 here).
        report = scrub_registry(registry, store.erased_users(), scrub_files)
        assert report.rewritten == {2: 1} and not report.failed
        assert _gridfs_holds(mongo_db, ERASED) == []
        assert _cache_holds(cache, ERASED) == []

        # Rolling back to v2 brings back a scrubbed version that still loads and keeps everyone else.
        rolled = runner.invoke(app, ["model", "rollback", "--reason", "v1 was only a test"])
        assert rolled.exit_code == 0, rolled.output
        from model.artifact import ModelArtifact

        files = registry.load_files(2)
        artifact = ModelArtifact.from_files(files)
        assert artifact.user_ids.tolist() == [u for u in USERS if u != ERASED]
        # Another host's cache with the old bytes: the registry's sweep deletes what no record names.
        stale = cache / "v2" / "user_ids.npy"
        stale.write_bytes(artifact_files(2, seed=2)["user_ids.npy"])
        assert _cache_holds(cache, ERASED) == ["v2/user_ids.npy"]
        assert registry.sweep_cache() == 1 and _cache_holds(cache, ERASED) == []
        assert registry.load_files(2) == files
    finally:
        store.close()
        registry.close()


def test_stale_swaps_are_refused_and_crash_leftovers_are_removed(env: Settings, mongo_db: Any) -> None:
    import gridfs

    from storage.errors import RegistryError

    registry = open_model_registry(env)
    bucket = gridfs.GridFSBucket(mongo_db, bucket_name=BUCKET)
    try:
        registry.publish(artifact_files(1), {}, version=1)
        n_files = len(list(bucket.find({"metadata.version": 1})))
        # Old bytes a crashed rewrite left behind (no record names them).
        old = artifact_files(1)["user_ids.npy"]
        bucket.upload_from_stream(
            "user_ids.npy", old, metadata={"version": 1, "name": "user_ids.npy", "sha256": "stale"}
        )
        # A swap derived from a mark that is no longer current changes nothing and leaves no upload.
        files, _ = scrub_files(artifact_files(1), {"bob"})
        with pytest.raises(RegistryError, match="another process"):
            registry.apply_erasure(1, files, {"digest": "new"}, expected_digest="not-the-current-mark")
        assert len(list(bucket.find({"metadata.version": 1}))) == n_files + 1

        report = scrub_registry(registry, {ERASED}, scrub_files)
        assert report.rewritten == {1: 1}
        assert _gridfs_holds(mongo_db, ERASED) == [], "the leftover went with the rewrite"
        assert len(list(bucket.find({"metadata.version": 1}))) == n_files
    finally:
        registry.close()
