"""The model registry's in-memory twin: the semantics of ``MongoModelRegistry`` without MongoDB or disk.

Tests reach into ``_files`` to damage stored bytes (a corrupt artifact).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from storage.errors import ArtifactUnavailable, ModelNotFound, RegistryError
from storage.model_registry import (
    ModelRecord,
    Status,
    check_publish,
    file_infos,
    new_record_doc,
    record_from_doc,
    sha256_hex,
    utc_now,
)


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

    def publish(
        self, files: Mapping[str, bytes], record: dict[str, Any], *, version: int | None = None
    ) -> int:
        check_publish(files, record)
        version = self.next_version() if version is None else version
        if version in self._records:
            raise RegistryError(f"model v{version} is already published")
        doc = new_record_doc(version, files, record)  # refuses a file that is not bytes
        self._files[version] = {n: bytes(files[n]) for n in files}
        self._records[version] = record_from_doc(doc)
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
        rec = replace(self._records[version], status=status, reason=reason, status_changed_at=utc_now())
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
        files: Mapping[str, bytes] | None,
        erasure: dict[str, Any],
        *,
        expected_digest: str | None,
    ) -> ModelRecord:
        rec = self.get(version)
        if rec.erasure.get("digest") != expected_digest:
            raise RegistryError(f"model v{version} was changed meanwhile; its erasure is applied again")
        if files is not None:
            check_publish(files, {})
            infos = file_infos(files)
            self._files[version] = {n: bytes(files[n]) for n in files}
            rec = replace(rec, files=infos)
        rec = replace(rec, erasure=dict(erasure))
        self._records[version] = rec
        return rec

    def record_online_evidence(self, version: int, evidence: dict[str, Any]) -> ModelRecord:
        rec = replace(self.get(version), online=dict(evidence))
        self._records[version] = rec
        return rec

    def rollback(self, reason: str = "rollback") -> ModelRecord:
        if self._champion is None or not self._previous:
            raise RegistryError("there is no previous champion to roll back to")
        current, previous = self._champion, self._previous.pop()
        self._champion = previous
        self._set(current, "retired", f"rolled back to v{previous}: {reason}")
        return self._set(previous, "champion", f"restored by rollback from v{current}: {reason}")
