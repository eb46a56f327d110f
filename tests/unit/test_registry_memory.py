"""The in-memory registry twin: the same status rules the MongoDB adapter follows."""

from __future__ import annotations

import pytest

from core.errors import ArtifactError
from storage.errors import ArtifactUnavailable, ModelNotFound, RegistryError
from storage.model_registry import sha256_hex
from storage.model_registry_memory import InMemoryModelRegistry

FILES = {"embeddings.npy": b"\x93NUMPY fake", "meta.json": b'{"a": 1}'}


def _publish(reg: InMemoryModelRegistry, **record: object) -> int:
    return reg.publish(FILES, {"metrics": {"ndcg@10": 0.1}, **record})


def test_publish_stores_a_candidate_with_file_hashes() -> None:
    reg = InMemoryModelRegistry()
    v = _publish(reg, n_events=10, reason="x")
    rec = reg.get(v)
    assert (v, rec.status, rec.n_events, rec.reason) == (1, "candidate", 10, "x")
    assert {f.name: f.sha256 for f in rec.files} == {n: sha256_hex(d) for n, d in FILES.items()}
    assert reg.load_files(v) == FILES
    assert reg.champion() is None


def test_versions_increase_and_explicit_versions_are_unique() -> None:
    reg = InMemoryModelRegistry()
    v = reg.next_version()
    assert reg.publish(FILES, {}, version=v) == v
    assert _publish(reg) == v + 1
    with pytest.raises(RegistryError, match="already published"):
        reg.publish(FILES, {}, version=v)


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match="file name"):
        InMemoryModelRegistry().publish({name: b"x"}, {})


def test_unknown_record_fields_are_refused() -> None:
    with pytest.raises(RegistryError, match="unknown record fields"):
        InMemoryModelRegistry().publish(FILES, {"status": "champion"})


def test_promote_retires_the_old_champion_and_rollback_restores_it() -> None:
    reg = InMemoryModelRegistry()
    v1, v2, v3 = _publish(reg), _publish(reg), _publish(reg)
    reg.promote(v1, "first")
    reg.promote(v2, "better")
    assert reg.champion() is not None and reg.champion().version == v2  # type: ignore[union-attr]
    assert reg.get(v1).status == "retired" and "superseded by v2" in (reg.get(v1).reason or "")
    reg.reject(v3, "worse")
    assert reg.get(v3).status == "rejected"

    restored = reg.rollback("bad in production")
    assert restored.version == v1 and restored.status == "champion"
    assert reg.get(v2).status == "retired" and "rolled back" in (reg.get(v2).reason or "")
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback()


def test_rollback_without_champion_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="no previous champion"):
        InMemoryModelRegistry().rollback()


def test_the_champion_cannot_be_rejected() -> None:
    reg = InMemoryModelRegistry()
    v = _publish(reg)
    reg.promote(v, "first")
    with pytest.raises(RegistryError, match="is the champion"):
        reg.reject(v, "no")


def test_unknown_version_and_corrupt_files_are_clear_errors() -> None:
    reg = InMemoryModelRegistry()
    with pytest.raises(ModelNotFound, match="v7 does not exist"):
        reg.get(7)
    v = _publish(reg)
    reg._files[v]["meta.json"] = b"tampered"
    with pytest.raises(ArtifactUnavailable, match="corrupt") as info:
        reg.load_files(v)
    # Serving catches the model package's error type.
    assert isinstance(info.value, ArtifactError)


def test_record_serialises_to_json_types() -> None:
    import orjson

    reg = InMemoryModelRegistry()
    rec = reg.get(_publish(reg))
    data = orjson.loads(orjson.dumps(rec.to_json_dict()))
    assert data["version"] == 1 and data["status"] == "candidate" and len(data["files"]) == 2


def test_online_evidence_is_kept_on_the_record_and_replaced_whole() -> None:
    reg = InMemoryModelRegistry()
    v = _publish(reg)
    assert reg.get(v).online == {}
    reg.record_online_evidence(v, {"experiment_id": "e1", "report": {"winner": "b"}})
    reg.record_online_evidence(v, {"experiment_id": "e2"})
    assert reg.get(v).online == {"experiment_id": "e2"}
    assert reg.get(v).to_json_dict()["online"] == {"experiment_id": "e2"}
    with pytest.raises(ModelNotFound):
        reg.record_online_evidence(99, {})
