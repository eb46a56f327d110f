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
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from core.errors import DependencyUnavailable, StreamrecError
from core.settings import Settings
from model.errors import ArtifactError

log = logging.getLogger(__name__)

Status = Literal["candidate", "champion", "rejected", "retired"]
STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "retired")
BUCKET = "model_artifacts"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Fields of a published record that the caller may set; everything else is owned by the registry.
RECORD_FIELDS = ("trained_at", "metrics", "config", "data_window", "n_events", "gate", "reason")


class RegistryError(StreamrecError):
    """A registry operation cannot be done (unknown version, nothing to roll back to...)."""


class ModelNotFound(RegistryError):
    """No model with that version was published."""


class ArtifactUnavailable(RegistryError, ArtifactError):
    """An artifact file is missing or its bytes do not match the sha256 recorded at publish time."""


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

    def load_files(self, version: int) -> dict[str, bytes]: ...

    def promote(self, version: int, reason: str) -> ModelRecord: ...

    def reject(self, version: int, reason: str) -> ModelRecord: ...

    def rollback(self, reason: str = "rollback") -> ModelRecord: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

    def load_files(self, version: int) -> dict[str, bytes]:
        record = self.get(version)
        stored = self._files[version]
        for info in record.files:
            if info.name not in stored:
                raise ArtifactUnavailable(f"model v{version}: artifact file {info.name!r} is missing")
            if sha256_hex(stored[info.name]) != info.sha256:
                raise ArtifactUnavailable(f"model v{version}: artifact file {info.name!r} is corrupt")
        return dict(stored)

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

    def rollback(self, reason: str = "rollback") -> ModelRecord:
        if self._champion is None or not self._previous:
            raise RegistryError("there is no previous champion to roll back to")
        current, previous = self._champion, self._previous.pop()
        self._champion = previous
        self._set(current, "retired", f"rolled back to v{previous}: {reason}")
        return self._set(previous, "champion", f"restored by rollback from v{current}: {reason}")


@contextmanager
def _mongo_errors(action: str) -> Iterator[None]:
    from pymongo.errors import ConnectionFailure

    try:
        yield
    except ConnectionFailure as exc:
        raise DependencyUnavailable(f"MongoDB is unreachable while {action}: {exc}") from exc


class MongoModelRegistry:
    """The real registry: MongoDB (GridFS + collections) with a sha-verified local disk cache."""

    def __init__(self, database: Any, cache_dir: Path) -> None:
        import gridfs

        self._db = database
        self._models = database["models"]
        self._counters = database["counters"]
        self._state = database["model_champion"]
        self._bucket = gridfs.GridFSBucket(database, bucket_name=BUCKET)
        self._cache_dir = Path(cache_dir)
        self._client: Any = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def next_version(self) -> int:
        from pymongo import ReturnDocument

        with _mongo_errors("allocating a model version"):
            doc = self._counters.find_one_and_update(
                {"_id": "model_version"},
                {"$inc": {"seq": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return int(doc["seq"])

    def publish(self, files: dict[str, bytes], record: dict[str, Any], *, version: int | None = None) -> int:
        _check_publish(files, record)
        version = self.next_version() if version is None else version
        doc = _new_doc(version, files, record)
        with _mongo_errors(f"publishing model v{version}"):
            if self._models.find_one({"_id": version}, {"_id": 1}) is not None:
                raise RegistryError(f"model v{version} is already published")
            # Leftovers of an earlier publish of this version that died before writing its record.
            for stale in self._bucket.find({"metadata.version": version}):
                self._bucket.delete(stale._id)
            # Files first, then the record: a record always points at complete files.
            for info in doc["files"]:
                self._bucket.upload_from_stream(
                    info["name"], bytes(files[info["name"]]), metadata={"version": version, **info}
                )
            self._models.insert_one(doc)
        log.info("model_published version=%d files=%d", version, len(files))
        return version

    def get(self, version: int) -> ModelRecord:
        with _mongo_errors(f"reading model v{version}"):
            doc = self._models.find_one({"_id": version})
        if doc is None:
            raise ModelNotFound(f"model v{version} does not exist (see `streamrec model list`)")
        return record_from_doc(doc)

    def list(self) -> list[ModelRecord]:
        with _mongo_errors("listing models"):
            return [record_from_doc(d) for d in self._models.find({}).sort("_id", 1)]

    def _state_doc(self) -> dict[str, Any]:
        return self._state.find_one({"_id": "champion"}) or {
            "_id": "champion",
            "version": None,
            "previous": [],
        }

    def champion(self) -> ModelRecord | None:
        with _mongo_errors("reading the champion"):
            version = self._state_doc().get("version")
        return None if version is None else self.get(int(version))

    # -- files -------------------------------------------------------------------------------------------

    def _cache_path(self, version: int, name: str) -> Path:
        return self._cache_dir / f"v{version}" / name

    def _read_cache(self, version: int, info: FileInfo) -> bytes | None:
        path = self._cache_path(version, info.name)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_hex(data) == info.sha256:
            return data
        log.warning("artifact_cache_mismatch version=%d file=%s action=redownload", version, info.name)
        return None

    def _write_cache(self, version: int, name: str, data: bytes) -> None:
        target = self._cache_path(version, name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            # mkstemp creates 0600; other local users (a serving replica under another uid) may read it.
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            # The cache only saves downloads; a read-only or full disk must not stop serving.
            log.warning("artifact_cache_write_failed version=%d file=%s error=%s", version, name, exc)

    def _download(self, version: int, info: FileInfo) -> bytes:
        from gridfs.errors import CorruptGridFile, NoFile

        with _mongo_errors(f"downloading model v{version}"):
            try:
                candidates = list(
                    self._bucket.find({"metadata.version": version, "metadata.name": info.name})
                )
                if not candidates:
                    raise NoFile(info.name)
                newest = max(candidates, key=lambda f: f.upload_date)
                stream = self._bucket.open_download_stream(newest._id)
                data = stream.read()
            except (NoFile, CorruptGridFile) as exc:
                raise ArtifactUnavailable(
                    f"model v{version}: artifact file {info.name!r} is missing or truncated in MongoDB: {exc}"
                ) from exc
        if sha256_hex(data) != info.sha256:
            raise ArtifactUnavailable(
                f"model v{version}: artifact file {info.name!r} in MongoDB does not match its sha256 "
                f"(corrupt); promote or roll back to another version"
            )
        return data

    def load_files(self, version: int) -> dict[str, bytes]:
        record = self.get(version)
        out: dict[str, bytes] = {}
        for info in record.files:
            data = self._read_cache(version, info)
            if data is None:
                data = self._download(version, info)
                self._write_cache(version, info.name, data)
            out[info.name] = data
        return out

    # -- status changes ----------------------------------------------------------------------------------

    def _set_status(self, version: int, status: Status, reason: str) -> ModelRecord:
        with _mongo_errors(f"updating model v{version}"):
            self._models.update_one(
                {"_id": version}, {"$set": {"status": status, "reason": reason, "status_changed_at": _now()}}
            )
        return self.get(version)

    def _swap_champion(self, expected: dict[str, Any], update: dict[str, Any]) -> None:
        """Compare-and-swap the champion document; a concurrent change makes this fail loudly."""
        from pymongo.errors import DuplicateKeyError

        flt = {
            "_id": "champion",
            "version": expected.get("version"),
            "previous": expected.get("previous", []),
        }
        with _mongo_errors("changing the champion"):
            try:
                result = self._state.update_one(flt, update, upsert=True)
            except DuplicateKeyError:
                result = None
        if result is None or (result.matched_count == 0 and result.upserted_id is None):
            raise RegistryError("the champion changed while promoting; run the command again")

    def promote(self, version: int, reason: str) -> ModelRecord:
        self.get(version)
        with _mongo_errors("reading the champion"):
            state = self._state_doc()
        old = state.get("version")
        if old == version:
            return self._set_status(version, "champion", reason)
        previous = list(state.get("previous") or [])
        self._swap_champion(
            state,
            {"$set": {"version": version, "previous": [*previous, old] if old is not None else previous}},
        )
        if old is not None:
            self._set_status(int(old), "retired", f"superseded by v{version}")
        log.info("model_promoted version=%d previous=%s reason=%s", version, old, reason)
        return self._set_status(version, "champion", reason)

    def reject(self, version: int, reason: str) -> ModelRecord:
        self.get(version)
        with _mongo_errors("reading the champion"):
            if self._state_doc().get("version") == version:
                raise RegistryError(
                    f"model v{version} is the champion; promote another version or roll back first"
                )
        return self._set_status(version, "rejected", reason)

    def rollback(self, reason: str = "rollback") -> ModelRecord:
        with _mongo_errors("reading the champion"):
            state = self._state_doc()
        current, previous = state.get("version"), list(state.get("previous") or [])
        if current is None or not previous:
            raise RegistryError("there is no previous champion to roll back to")
        target = int(previous[-1])
        self.get(target)
        self._swap_champion(state, {"$set": {"version": target, "previous": previous[:-1]}})
        self._set_status(int(current), "retired", f"rolled back to v{target}: {reason}")
        log.info("model_rolled_back from=%s to=%d reason=%s", current, target, reason)
        return self._set_status(target, "champion", f"restored by rollback from v{current}: {reason}")


def open_model_registry(settings: Settings) -> MongoModelRegistry:
    """A registry on its own MongoClient (closed by ``registry.close()``)."""
    from pymongo import MongoClient

    client: Any = MongoClient(
        settings.mongo.uri.get_secret_value(),
        serverSelectionTimeoutMS=settings.mongo.timeout_ms,
        tz_aware=True,
    )
    registry = MongoModelRegistry(client[settings.mongo.database], settings.model.artifact_cache_dir)
    registry._client = client
    return registry
