"""Erasure reaches stored model versions (storage/model_erasure.py) over the in-memory registry twin."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from model.artifact import ModelArtifact
from model.artifact_erasure import scrub_files
from storage.errors import ErasureIncomplete
from storage.model_erasure import erasure_digest, promote_erased, rollback_erased, scrub_registry
from storage.model_registry_memory import InMemoryModelRegistry

USERS = ["alice", "bob", "carol", "dave"]


def artifact_files(version: int, users: list[str] = USERS, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    n_items, dim = 6, 4
    user_emb = rng.normal(size=(len(users), dim)).astype(np.float32)
    user_emb[:, -1] = 1.0
    artifact = ModelArtifact(
        version=version,
        item_ids=np.array([f"i{j}" for j in range(n_items)]),
        user_ids=np.array(users),
        item_embeddings=rng.normal(size=(n_items, dim)).astype(np.float32),
        user_embeddings=user_emb,
        input_embeddings=rng.normal(size=(n_items, dim - 1)).astype(np.float32),
    )
    return dict(artifact.to_files())


def holds(files: dict[str, bytes], user: str) -> bool:
    """The id in any encoding an artifact could store it in (numpy unicode is UTF-32-LE)."""
    needles = (user.encode("utf-8"), user.encode("utf-32-le"))
    return any(n in data for data in files.values() for n in needles)


def published(n: int = 2) -> InMemoryModelRegistry:
    reg = InMemoryModelRegistry()
    for v in range(1, n + 1):
        reg.publish(artifact_files(v, seed=v), {}, version=v)
        reg.promote(v, "test")
    return reg


def test_scrub_files_drops_only_the_erased_rows_and_keeps_the_artifact_loadable() -> None:
    files = artifact_files(1)
    before = ModelArtifact.from_files(files)
    scrubbed, removed = scrub_files(files, {"bob", "nobody"})
    assert scrubbed is not None and removed == 1
    assert holds(files, "bob") and not holds(scrubbed, "bob")
    after = ModelArtifact.from_files(scrubbed)
    assert after.user_ids.tolist() == ["alice", "carol", "dave"]
    np.testing.assert_array_equal(after.user_embeddings, before.user_embeddings[[0, 2, 3]])
    np.testing.assert_array_equal(after.item_embeddings, before.item_embeddings)
    assert after.version == before.version and after.trained_at == before.trained_at


def test_scrub_files_without_an_erased_user_changes_nothing() -> None:
    assert scrub_files(artifact_files(1), {"zed"}) == (None, 0)
    assert scrub_files(artifact_files(1), set()) == (None, 0)
    # A file set without an id map (another model kind) has nothing to scrub.
    assert scrub_files({"model.json": b"{}"}, {"alice"}) == (None, 0)


def test_every_version_is_scrubbed_and_marked_then_skipped() -> None:
    reg = published(3)
    report = scrub_registry(reg, {"alice"}, scrub_files)
    assert report.rewritten == {1: 1, 2: 1, 3: 1} and not report.failed
    for v in (1, 2, 3):
        files = reg.load_files(v)
        assert not holds(files, "alice") and holds(files, "bob")
        assert reg.get(v).erasure["digest"] == erasure_digest({"alice"})
        assert reg.get(v).erasure["removed"] == 1
    again = scrub_registry(reg, {"alice"}, scrub_files)
    assert again.up_to_date == 3 and not again.checked
    # A later erasure adds to the count; the earlier one stays applied.
    later = scrub_registry(reg, {"alice", "carol"}, scrub_files)
    assert later.rewritten == {1: 1, 2: 1, 3: 1}
    assert reg.get(1).erasure["removed"] == 2 and reg.get(1).erasure["users"] == 2
    assert not holds(reg.load_files(1), "carol")


def test_a_version_without_the_user_is_only_marked() -> None:
    reg = InMemoryModelRegistry()
    reg.publish(artifact_files(1, users=["bob"]), {}, version=1)
    before = reg.get(1).files
    report = scrub_registry(reg, {"alice"}, scrub_files)
    assert report.rewritten == {} and report.checked == [1]
    assert reg.get(1).files == before and reg.get(1).erasure["digest"] == erasure_digest({"alice"})


def test_erasure_digest_ignores_order_and_cannot_be_faked_by_joining_ids() -> None:
    assert erasure_digest(["a", "b"]) == erasure_digest({"b", "a"})
    assert erasure_digest(["ab"]) != erasure_digest(["a", "b"])
    assert erasure_digest(["a\0b"]) != erasure_digest(["a", "b"])


def test_promoting_an_old_version_scrubs_it_first() -> None:
    reg = published(2)  # v2 champion, v1 retired; neither scrubbed yet
    record = promote_erased(reg, 1, "back to v1", {"dave"}, scrub_files)
    assert record.status == "champion" and record.version == 1
    assert not holds(reg.load_files(1), "dave")


def test_rollback_restores_a_scrubbed_champion() -> None:
    reg = published(2)
    record = rollback_erased(reg, "bad v2", {"dave"}, scrub_files)
    assert record.version == 1 and not holds(reg.load_files(1), "dave")


def test_an_unreadable_version_is_reported_retried_and_blocks_its_promotion() -> None:
    reg = InMemoryModelRegistry()
    files = artifact_files(1)
    files["user_ids.npy"] = b"not an npy file"
    reg.publish(files, {}, version=1)
    reg.publish(artifact_files(2), {}, version=2)
    report = scrub_registry(reg, {"alice"}, scrub_files)
    assert set(report.failed) == {1} and report.rewritten == {2: 1}
    assert reg.get(1).erasure == {}, "a failed version keeps a stale mark, so it is retried"
    assert scrub_registry(reg, {"alice"}, scrub_files).checked == [1]
    with pytest.raises(ErasureIncomplete, match="v1"):
        promote_erased(reg, 1, "by hand", {"alice"}, scrub_files)
    assert reg.champion() is None


def test_non_artifact_versions_are_marked_without_change() -> None:
    reg = InMemoryModelRegistry()
    reg.publish({"model.json": orjson.dumps({"counts": {"i1": 2}})}, {}, version=1)
    report = scrub_registry(reg, {"alice"}, scrub_files)
    assert not report.failed and reg.get(1).erasure["users"] == 1


def test_a_scrub_based_on_an_outdated_mark_is_refused_not_applied() -> None:
    from storage.errors import RegistryError

    reg = published(1)
    stale = reg.get(1)  # read before another process applied a newer, larger erasure set
    scrub_registry(reg, {"alice", "bob"}, scrub_files)
    files, _ = scrub_files(artifact_files(1, seed=1), {"alice"})  # still holds bob
    with pytest.raises(RegistryError, match="changed meanwhile"):
        reg.apply_erasure(1, files, {"digest": "x"}, expected_digest=stale.erasure.get("digest"))
    assert not holds(reg.load_files(1), "bob")
