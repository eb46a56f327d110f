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

This module holds the types, the port and the in-memory twin; the MongoDB adapter is in
storage/model_registry_mongo.py (re-exported here).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from storage.errors import ArtifactUnavailable, ModelNotFound, RegistryError

if TYPE_CHECKING:
    from storage.model_registry_mongo import MongoModelRegistry, open_model_registry

log = logging.getLogger(__name__)

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
        self, files: dict[str, bytes], record: dict[str, Any], *, version: int | None = None
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
        files: dict[str, bytes] | None,
        erasure: dict[str, Any],
        *,
        expected_digest: str | None,
    ) -> ModelRecord:
        """Record ``erasure`` on the version; with ``files``, first replace its whole file set (stored
        copies and local cache) by them. Only if the version's erasure digest is still
        ``expected_digest`` (what ``files`` were derived from); otherwise ``RegistryError``."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_infos(files: dict[str, bytes]) -> tuple[FileInfo, ...]:
    return tuple(FileInfo(n, sha256_hex(bytes(d)), len(d)) for n, d in sorted(files.items()))


def _check_publish(files: dict[str, bytes], record: dict[str, Any]) -> None:
    if not files:
        raise RegistryError("cannot publish a model without artifact files")
    for name, data in files.items():
        if not _SAFE_NAME.match(name) or ".." in name:
            raise RegistryError(f"artifact file name {name!r} is not a plain file name")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise RegistryError(f"artifact file {name!r} must be bytes, got {type(data).__name__}")
    unknown = set(record) - set(RECORD_FIELDS)
    if unknown:
        raise RegistryError(f"unknown record fields {sorted(unknown)}; allowed: {', '.join(RECORD_FIELDS)}")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def record_from_doc(doc: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        version=int(doc["_id"]),
        status=doc["status"],
        created_at=_aware(doc["created_at"]) or _now(),
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
    )


def _new_doc(version: int, files: dict[str, bytes], record: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    return {
        "_id": version,
        "status": "candidate",
        "created_at": now,
        "status_changed_at": now,
        "files": [
            {"name": n, "sha256": sha256_hex(bytes(d)), "size": len(d)} for n, d in sorted(files.items())
        ],
        "trained_at": record.get("trained_at"),
        "metrics": record.get("metrics") or {},
        "config": record.get("config") or {},
        "data_window": record.get("data_window") or {},
        "n_events": record.get("n_events"),
        "gate": record.get("gate") or {},
        "reason": record.get("reason"),
        "erasure": record.get("erasure") or {},
    }


class InMemoryModelRegistry:
    """The twin used by unit tests: same semantics, no MongoDB, no disk."""

    def __init__(self) -> None:
        self._seq = 0
        self._records: dict[int, ModelRecord] = {}
        self._files: dict[int, dict[str, bytes]] = {}
        self._champion: int | None = None
        self._previous: list[int] = []

    def next_version(self) -> int:
        self._seq += 1
        return self._seq

    def publish(self, files: dict[str, bytes], record: dict[str, Any], *, version: int | None = None) -> int:
        _check_publish(files, record)
        version = self.next_version() if version is None else version
        if version in self._records:
            raise RegistryError(f"model v{version} is already published")
        self._files[version] = {n: bytes(d) for n, d in files.items()}
        self._records[version] = record_from_doc(_new_doc(version, files, record))
        return version

    def get(self, version: int) -> ModelRecord:
        if version not in self._records:
            raise ModelNotFound(f"model v{version} does not exist (see `streamrec model list`)")
        return self._records[version]

    def list(self) -> list[ModelRecord]:
        return [self._records[v] for v in sorted(self._records)]

    def champion(self) -> ModelRecord | None:
        return None if self._champion is None else self._records[self._champion]

    def load_files(self, version: int, names: Collection[str] | None = None) -> dict[str, bytes]:
        record = self.get(version)
        stored = self._files[version]
        wanted = [f for f in record.files if names is None or f.name in names]
        for info in wanted:
            if info.name not in stored:
                raise ArtifactUnavailable(f"model v{version}: artifact file {info.name!r} is missing")
            if sha256_hex(stored[info.name]) != info.sha256:
                raise ArtifactUnavailable(f"model v{version}: artifact file {info.name!r} is corrupt")
        return {info.name: stored[info.name] for info in wanted}

    def _set(self, version: int, status: Status, reason: str) -> ModelRecord:
        rec = replace(self._records[version], status=status, reason=reason, status_changed_at=_now())
        self._records[version] = rec
        return rec

    def promote(self, version: int, reason: str) -> ModelRecord:
        self.get(version)
        old = self._champion
        if old == version:
            return self._records[version]
        if old is not None:
            self._previous.append(old)
            self._set(old, "retired", f"superseded by v{version}")
        self._champion = version
        return self._set(version, "champion", reason)

    def reject(self, version: int, reason: str) -> ModelRecord:
        if self._champion == version:
            raise RegistryError(
                f"model v{version} is the champion; promote another version or roll back first"
            )
        self.get(version)
        return self._set(version, "rejected", reason)

    def mark_not_judged(self, version: int, reason: str) -> ModelRecord:
        if self._champion == version:
            raise RegistryError(f"model v{version} is the champion; it cannot be set aside")
        self.get(version)
        return self._set(version, "not_judged", reason)

    def apply_erasure(
        self,
        version: int,
        files: dict[str, bytes] | None,
        erasure: dict[str, Any],
        *,
        expected_digest: str | None,
    ) -> ModelRecord:
        rec = self.get(version)
        if rec.erasure.get("digest") != expected_digest:
            raise RegistryError(f"model v{version} was changed meanwhile; its erasure is applied again")
        if files is not None:
            _check_publish(files, {})
            self._files[version] = {n: bytes(d) for n, d in files.items()}
            rec = replace(rec, files=file_infos(files))
        rec = replace(rec, erasure=dict(erasure))
        self._records[version] = rec
        return rec

    def rollback(self, reason: str = "rollback") -> ModelRecord:
        if self._champion is None or not self._previous:
            raise RegistryError("there is no previous champion to roll back to")
        current, previous = self._champion, self._previous.pop()
        self._champion = previous
        self._set(current, "retired", f"rolled back to v{previous}: {reason}")
        return self._set(previous, "champion", f"restored by rollback from v{current}: {reason}")


# The MongoDB adapter lives in its own module (this one would pass the ~400-line guide otherwise). It
# imports the names above, so it is re-exported lazily: an import at the top or bottom here would be
# circular whichever module is imported first.
_MONGO_NAMES = ("MongoModelRegistry", "open_model_registry")


def __getattr__(name: str) -> Any:
    if name in _MONGO_NAMES:
        import storage.model_registry_mongo as mongo

        return getattr(mongo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUCKET",
    "STATUSES",
    "FileInfo",
    "InMemoryModelRegistry",
    "ModelRecord",
    "ModelRegistry",
    "MongoModelRegistry",
    "Status",
    "open_model_registry",
    "record_from_doc",
    "sha256_hex",
]
