"""Model registry: published model versions, their artifact files and which one is champion.

MongoDB holds everything so serving replicas on other hosts can load a model:

* GridFS bucket ``model_artifacts``: one GridFS file per artifact file, metadata ``{version, name, sha256}``;
* ``models``: one record per version (``_id`` = version, status, metrics, config, data window, files...);
* ``counters``: ``{_id: "model_version", seq}``, versions are allocated with an atomic ``$inc``;
* ``model_champion``: ``{_id: "champion", version, previous: [...]}``, the single source of truth for the
  champion. Promotion is a compare-and-swap on this one document (no multi-document transaction is
  needed), then the status fields of the records involved are updated to mirror it.

Files are cached on local disk under ``<cache_dir>/v{version}/{name}``; every read verifies the sha256
recorded at publish time and re-downloads on mismatch. A stored file whose bytes no longer match its
sha256 raises ``ArtifactUnavailable``.

A version's files may be replaced once, in place, by ``apply_erasure`` (erased users' rows removed from
the artifact; see storage/model_erasure.py); the record's sha256 list is switched in one update, so a reader
sees either the old complete file set or the new one.

This module holds the records and the port; the adapters are storage/model_registry_mongo.py (MongoDB
and GridFS, with the disk cache in storage/artifact_cache.py) and storage/model_registry_memory.py (the
in-memory twin for unit tests). Errors are in storage/errors.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from storage.errors import RegistryError

# not_judged: published beside the champion without a verdict (the gate had too little evidence).
Status = Literal["candidate", "champion", "rejected", "not_judged", "retired"]
STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "not_judged", "retired")
BUCKET = "model_artifacts"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Fields of a published record that the caller may set; everything else is owned by the registry.
RECORD_FIELDS = ("trained_at", "metrics", "config", "data_window", "n_events", "gate", "reason", "erasure")


@dataclass(frozen=True)
class FileInfo:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelRecord:
    version: int
    status: Status
    created_at: datetime
    files: tuple[FileInfo, ...]
    trained_at: datetime | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    data_window: dict[str, Any] = field(default_factory=dict)
    n_events: int | None = None
    # Quality-gate figures: candidate_ndcg, champion_ndcg, champion_version, tolerance, holdout users...
    gate: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    status_changed_at: datetime | None = None
    # Which erasures the stored files reflect: {digest, users, removed, at} (storage/model_erasure.py).
    erasure: dict[str, Any] = field(default_factory=dict)
    # The online evidence it was promoted on: the experiment, the variant and its report (JSON values).
    online: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "trained_at", "status_changed_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        data["files"] = [asdict(f) for f in self.files]
        return data


class ModelRegistry(Protocol):
    def next_version(self) -> int: ...

    def publish(
        self, files: Mapping[str, bytes], record: dict[str, Any], *, version: int | None = None
    ) -> int: ...

    def get(self, version: int) -> ModelRecord: ...

    def list(self) -> list[ModelRecord]: ...

    def champion(self) -> ModelRecord | None: ...

    def load_files(self, version: int, names: Collection[str] | None = None) -> dict[str, bytes]:
        """The version's files (only ``names``, when given), each checked against its sha256."""

    def promote(self, version: int, reason: str) -> ModelRecord: ...

    def reject(self, version: int, reason: str) -> ModelRecord: ...

    def mark_not_judged(self, version: int, reason: str) -> ModelRecord: ...

    def rollback(self, reason: str = "rollback") -> ModelRecord: ...

    def apply_erasure(
        self,
        version: int,
        files: Mapping[str, bytes] | None,
        erasure: dict[str, Any],
        *,
        expected_digest: str | None,
    ) -> ModelRecord:
        """Record ``erasure`` on the version; with ``files``, first replace its whole file set (stored
        copies and local cache) by them. Only if the version's erasure digest is still
        ``expected_digest`` (what ``files`` were derived from); otherwise ``RegistryError``."""

    def record_online_evidence(self, version: int, evidence: dict[str, Any]) -> ModelRecord:
        """Store ``evidence`` (JSON values: an experiment's report) as the version's ``online``,
        replacing any earlier one; raises ``ModelNotFound``."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info(name: str, data: bytes) -> FileInfo:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RegistryError(f"artifact file {name!r} must be bytes, got {type(data).__name__}")
    return FileInfo(name, sha256_hex(data), len(data))


def file_infos(files: Mapping[str, bytes]) -> tuple[FileInfo, ...]:
    # One file at a time: a lazy mapping (model.artifact.ArtifactFiles) makes each only when read.
    return tuple(_info(n, files[n]) for n in sorted(files))


def check_publish(files: Mapping[str, bytes], record: dict[str, Any]) -> None:
    """Names and record fields; the files' contents are checked as each is stored (file_infos)."""
    if not files:
        raise RegistryError("cannot publish a model without artifact files")
    for name in files:
        if not _SAFE_NAME.match(name) or ".." in name:
            raise RegistryError(f"artifact file name {name!r} is not a plain file name")
    unknown = set(record) - set(RECORD_FIELDS)
    if unknown:
        raise RegistryError(f"unknown record fields {sorted(unknown)}; allowed: {', '.join(RECORD_FIELDS)}")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def record_from_doc(doc: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        version=int(doc["_id"]),
        status=doc["status"],
        created_at=_aware(doc["created_at"]) or utc_now(),
        files=tuple(FileInfo(f["name"], f["sha256"], int(f["size"])) for f in doc.get("files", [])),
        trained_at=_aware(doc.get("trained_at")),
        metrics=dict(doc.get("metrics") or {}),
        config=dict(doc.get("config") or {}),
        data_window=dict(doc.get("data_window") or {}),
        n_events=doc.get("n_events"),
        gate=dict(doc.get("gate") or {}),
        reason=doc.get("reason"),
        status_changed_at=_aware(doc.get("status_changed_at")),
        erasure=dict(doc.get("erasure") or {}),
        online=dict(doc.get("online") or {}),
    )


def new_record_doc(version: int, files: Mapping[str, bytes], record: dict[str, Any]) -> dict[str, Any]:
    now = utc_now()
    return {
        "_id": version,
        "status": "candidate",
        "created_at": now,
        "status_changed_at": now,
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in file_infos(files)],
        "trained_at": record.get("trained_at"),
        "metrics": record.get("metrics") or {},
        "config": record.get("config") or {},
        "data_window": record.get("data_window") or {},
        "n_events": record.get("n_events"),
        "gate": record.get("gate") or {},
        "reason": record.get("reason"),
        "erasure": record.get("erasure") or {},
    }
