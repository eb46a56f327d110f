"""The MongoDB model registry: GridFS files, the ``models`` records, the champion document.

See storage/model_registry.py for the layout; this module is the adapter behind its ``ModelRegistry`` port.
Downloaded files are kept in the local disk cache of storage/artifact_cache.py.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import DependencyUnavailable
from core.settings import Settings
from storage.artifact_cache import ArtifactCache
from storage.errors import ArtifactUnavailable, ModelNotFound, RegistryError
from storage.model_registry import (
    BUCKET,
    FileInfo,
    ModelRecord,
    Status,
    check_publish,
    new_record_doc,
    record_from_doc,
    sha256_hex,
    utc_now,
)

log = logging.getLogger(__name__)


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
        self._cache = ArtifactCache(cache_dir)
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

    def publish(
        self, files: Mapping[str, bytes], record: dict[str, Any], *, version: int | None = None
    ) -> int:
        check_publish(files, record)
        version = self.next_version() if version is None else version
        doc = new_record_doc(version, files, record)
        with _mongo_errors(f"publishing model v{version}"):
            if self._models.find_one({"_id": version}, {"_id": 1}) is not None:
                raise RegistryError(f"model v{version} is already published")
            # Leftovers of an earlier publish of this version that died before writing its record.
            for stale in self._bucket.find({"metadata.version": version}):
                self._bucket.delete(stale._id)
            # Files first, then the record: a record always points at complete files.
            for info in doc["files"]:
                self._bucket.upload_from_stream(
                    info["name"], _same_bytes(files, info), metadata={"version": version, **info}
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

    def _download(self, version: int, info: FileInfo) -> bytes:
        from gridfs.errors import CorruptGridFile, NoFile

        with _mongo_errors(f"downloading model v{version}"):
            try:
                # The file whose bytes the record names: after apply_erasure replaced a file, the old
                # copy may linger for a moment and must not be picked.
                candidates = list(
                    self._bucket.find(
                        {
                            "metadata.version": version,
                            "metadata.name": info.name,
                            "metadata.sha256": info.sha256,
                        }
                    )
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

    def load_files(self, version: int, names: Collection[str] | None = None) -> dict[str, bytes]:
        record = self.get(version)
        out: dict[str, bytes] = {}
        for info in record.files:
            if names is not None and info.name not in names:
                continue
            data = self._cache.read(version, info)
            if data is None:
                data = self._download(version, info)
                self._cache.write(version, info.name, data)
            out[info.name] = data
        return out

    # -- status changes ----------------------------------------------------------------------------------

    def _set_status(self, version: int, status: Status, reason: str) -> ModelRecord:
        with _mongo_errors(f"updating model v{version}"):
            self._models.update_one(
                {"_id": version},
                {"$set": {"status": status, "reason": reason, "status_changed_at": utc_now()}},
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

    def mark_not_judged(self, version: int, reason: str) -> ModelRecord:
        self.get(version)
        with _mongo_errors("reading the champion"):
            if self._state_doc().get("version") == version:
                raise RegistryError(f"model v{version} is the champion; it cannot be set aside")
        return self._set_status(version, "not_judged", reason)

    def apply_erasure(
        self,
        version: int,
        files: Mapping[str, bytes] | None,
        erasure: dict[str, Any],
        *,
        expected_digest: str | None,
    ) -> ModelRecord:
        """Upload the new files, switch the record to them in one compare-and-swap update (on
        ``expected_digest``, the erasure mark the caller derived ``files`` from), then delete the files
        they replaced and rewrite this host's cache.

        A record never points at missing bytes: a lost swap (another process scrubbed the version
        meanwhile) deletes only this call's uploads and raises ``RegistryError``; the clean-up after a
        won swap deletes only files uploaded before this call began, so it cannot remove another
        process's fresh uploads, and it also removes old copies a crashed earlier call left behind."""
        started = utc_now()
        record = self.get(version)
        update: dict[str, Any] = {"erasure": erasure}
        uploaded: list[Any] = []
        flt: dict[str, Any] = {"_id": version, "erasure.digest": expected_digest}
        if expected_digest is None:
            flt["erasure.digest"] = {"$exists": False}
        with _mongo_errors(f"rewriting model v{version}"):
            if files is not None:
                check_publish(files, {})
                update["files"] = new_record_doc(version, files, {})["files"]
                unchanged = {(f.name, f.sha256) for f in record.files}
                for info in update["files"]:
                    if (info["name"], info["sha256"]) in unchanged:
                        continue  # the same bytes are stored already (item embeddings, index...)
                    uploaded.append(
                        self._bucket.upload_from_stream(
                            info["name"], _same_bytes(files, info), metadata={"version": version, **info}
                        )
                    )
            if self._models.update_one(flt, {"$set": update}).matched_count == 0:
                for file_id in uploaded:
                    self._bucket.delete(file_id)
                raise RegistryError(
                    f"model v{version} was changed by another process while its erasure was applied; "
                    "it is applied again on the next pass"
                )
            keep = {(f["name"], f["sha256"]) for f in update.get("files", [])} or {
                (f.name, f.sha256) for f in record.files
            }
            for stored in self._bucket.find({"metadata.version": version}):
                meta = stored.metadata or {}
                if (meta.get("name"), meta.get("sha256")) not in keep and _before(
                    stored.upload_date, started
                ):
                    self._bucket.delete(stored._id)
        if files is not None:
            # The old bytes must not survive in the cache either: drop the version's directory, then
            # cache the new files (a failed write only costs a download later).
            self._cache.drop(version)
            for name, data in files.items():
                self._cache.write(version, name, bytes(data))
            log.info("model_artifact_rewritten version=%d files=%d", version, len(files))
        return self.get(version)

    def record_online_evidence(self, version: int, evidence: dict[str, Any]) -> ModelRecord:
        with _mongo_errors(f"recording online evidence on model v{version}"):
            matched = self._models.update_one({"_id": version}, {"$set": {"online": evidence}}).matched_count
        if matched == 0:
            raise ModelNotFound(f"model v{version} does not exist (see `streamrec model list`)")
        log.info("model_online_evidence version=%d keys=%s", version, ",".join(sorted(evidence)))
        return self.get(version)

    def sweep_cache(self) -> int:
        """Delete cached files that no record names any more (rewritten or unknown versions); returns
        how many. Serving replicas with their own cache directory call this to drop scrubbed bytes."""

        def wanted(version: int) -> dict[str, str]:
            try:
                return {f.name: f.sha256 for f in self.get(version).files}
            except ModelNotFound:
                return {}

        return self._cache.sweep(wanted)

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


def _same_bytes(files: Mapping[str, bytes], info: dict[str, Any]) -> bytes:
    """The file the record describes: ``files`` may make each file when it is read
    (model.artifact.ArtifactFiles), so the bytes uploaded are checked against the record's sha256."""
    data = bytes(files[info["name"]])
    if sha256_hex(data) != info["sha256"]:
        raise RegistryError(f"artifact file {info['name']!r} changed while it was being published")
    return data


def _before(uploaded: datetime | None, started: datetime) -> bool:
    """GridFS upload dates may come back naive (UTC) or aware, depending on the client."""
    if uploaded is None:
        return True
    if uploaded.tzinfo is None:
        uploaded = uploaded.replace(tzinfo=UTC)
    return uploaded < started


def open_model_registry(settings: Settings) -> MongoModelRegistry:
    """A registry on its own MongoClient (closed by ``registry.close()``)."""
    from storage.mongo_client import open_mongo_client

    client = open_mongo_client(settings.mongo)
    registry = MongoModelRegistry(client[settings.mongo.database], settings.model.artifact_cache_dir)
    registry._client = client
    return registry
