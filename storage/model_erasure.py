"""Erasure reaches every stored model: erased users' ids and vectors are removed from published artifacts.

A trained artifact keeps one row per training user (``user_ids.npy`` and the matching row of
``user_embeddings.npy``: serving uses it as the user's long-term taste). Retraining leaves erased users
out, but every version published before the erasure (the champion, retired and rejected ones an operator
may promote again) still holds them. This module rewrites those versions without the erased rows.

Each record carries an ``erasure`` mark, ``{digest, users, removed, at}``: the digest of the erased set
its files reflect. A version whose mark matches the current set is skipped without reading a byte, so
the retrain loop can call ``scrub_registry`` often; a version with a stale mark has only its
``user_ids.npy`` read, and its files are rewritten only when an erased id is actually in it.

Dropping the rows keeps old artifacts loadable and serving unchanged for everyone else; the erased
user is served from their live events like any unknown shopper. The item index and item embeddings do
not depend on a single user's row, so they are kept as they are. (The items' weights were learnt with
the user's events in the data; removing that influence takes a retrain, which excludes them.)
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import ArtifactError
from storage.errors import ErasureIncomplete, RegistryError
from storage.model_registry import ModelRecord, ModelRegistry

log = logging.getLogger(__name__)

USER_IDS_FILE = "user_ids.npy"
# The artifact's files without the erased users' rows and how many went, or (None, 0) when none of them
# is in it; raises ArtifactError for an artifact it cannot read. The caller passes
# ``model.artifact_erasure.scrub_files``: the artifact format is model/'s, this module only stores.
FileScrub = Callable[[dict[str, bytes], set[str]], tuple[dict[str, bytes] | None, int]]


def erasure_digest(erased: Iterable[str]) -> str:
    """Order-independent digest of a set of user ids (length-prefixed, so no id can fake a boundary)."""
    h = hashlib.sha256()
    for user in sorted(set(erased)):
        raw = user.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.hexdigest()


def erasure_mark(erased: set[str], removed: int = 0) -> dict[str, Any]:
    return {
        "digest": erasure_digest(erased),
        "users": len(erased),
        "removed": removed,
        "at": datetime.now(UTC).isoformat(),
    }


def _user_ids(files: dict[str, bytes]) -> np.ndarray | None:
    """The artifact's user id map, or None for a file set that has none (not a ModelArtifact)."""
    data = files.get(USER_IDS_FILE)
    if data is None:
        return None
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{USER_IDS_FILE} is not a readable .npy array: {exc}") from exc
    return np.asarray(arr)


@dataclass
class ScrubReport:
    checked: list[int] = field(default_factory=list)  # versions whose files were read
    rewritten: dict[int, int] = field(default_factory=dict)  # version -> rows removed
    failed: dict[int, str] = field(default_factory=dict)  # version -> why it could not be scrubbed
    up_to_date: int = 0  # versions skipped because their mark matched


def scrub_version(registry: ModelRegistry, record: ModelRecord, erased: set[str], scrub: FileScrub) -> int:
    """Bring one version's files in line with ``erased``; returns the rows removed. Raises
    ``ErasureIncomplete`` when the files cannot be read or rewritten."""
    digest = erasure_digest(erased)
    if record.erasure.get("digest") == digest:
        return 0
    version = record.version
    previous = int(record.erasure.get("removed", 0) or 0)
    try:
        if erased and USER_IDS_FILE in {f.name for f in record.files}:
            # Only the id map is needed to know whether anything must change.
            users = _user_ids(registry.load_files(version, names=[USER_IDS_FILE]))
            hit = users is not None and bool(np.isin(users, np.array(sorted(erased), dtype=str)).any())
        else:
            hit = False
        files, removed = scrub(registry.load_files(version), erased) if hit else (None, 0)
        # Compare-and-swap on the mark these files were derived from: a concurrent scrub with a newer
        # erasure set must not be overwritten by files that still hold its users.
        registry.apply_erasure(
            version,
            files,
            erasure_mark(erased, previous + removed),
            expected_digest=record.erasure.get("digest"),
        )
    except (ArtifactError, RegistryError) as exc:
        raise ErasureIncomplete(
            f"model v{version} could not be scrubbed of {len(erased)} erased users: {exc}"
        ) from exc
    if removed:
        log.info("model_erasure_applied version=%d rows_removed=%d", version, removed)
    return removed


def scrub_registry(registry: ModelRegistry, erased: set[str], scrub: FileScrub) -> ScrubReport:
    """Scrub every published version; a version that fails is reported and retried next time (its mark
    stays stale), the others are still done."""
    report = ScrubReport()
    digest = erasure_digest(erased)
    for record in registry.list():
        if record.erasure.get("digest") == digest:
            report.up_to_date += 1
            continue
        report.checked.append(record.version)
        try:
            removed = scrub_version(registry, record, erased, scrub)
        except ErasureIncomplete as exc:
            log.error("model_erasure_failed version=%d error=%s", record.version, exc)
            report.failed[record.version] = str(exc)
            continue
        if removed:
            report.rewritten[record.version] = removed
    return report


def promote_erased(
    registry: ModelRegistry, version: int, reason: str, erased: set[str], scrub: FileScrub
) -> ModelRecord:
    """``registry.promote`` that first makes sure the version holds no erased user; refuses otherwise."""
    scrub_version(registry, registry.get(version), erased, scrub)
    return registry.promote(version, reason)


def rollback_erased(registry: ModelRegistry, reason: str, erased: set[str], scrub: FileScrub) -> ModelRecord:
    """``registry.rollback`` with every version scrubbed first (the target is only known to the
    registry); the restored champion is checked again afterwards and any failure is raised."""
    report = scrub_registry(registry, erased, scrub)
    record = registry.rollback(reason)
    if record.version in report.failed:
        # Scrubbing it once more may succeed (a download hiccup); if not, the operator must know.
        scrub_version(registry, registry.get(record.version), erased, scrub)
        record = registry.get(record.version)
    return record
