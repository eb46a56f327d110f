"""The local disk cache of model artifact files: ``<cache_dir>/v{version}/{name}``.

Every read is checked against the sha256 the registry recorded, so a stale or damaged copy reads as a
miss (the caller downloads again); writes go through a temporary file and ``os.replace``, so a reader
never sees half a file. The cache only saves downloads: a read-only or full disk is logged, not raised.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from storage.model_registry import FileInfo, sha256_hex

log = logging.getLogger(__name__)


class ArtifactCache:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def path(self, version: int, name: str) -> Path:
        return self.cache_dir / f"v{version}" / name

    def read(self, version: int, info: FileInfo) -> bytes | None:
        """The cached bytes of ``info``, or None when absent or not matching its sha256."""
        path = self.path(version, info.name)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_hex(data) == info.sha256:
            return data
        log.warning("artifact_cache_mismatch version=%d file=%s action=redownload", version, info.name)
        return None

    def write(self, version: int, name: str, data: bytes) -> None:
        target = self.path(version, name)
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

    def drop(self, version: int) -> None:
        """Forget every cached file of ``version`` (its bytes were replaced)."""
        shutil.rmtree(self.cache_dir / f"v{version}", ignore_errors=True)

    def sweep(self, wanted: Callable[[int], dict[str, str]]) -> int:
        """Delete cached files whose name and sha256 are not in ``wanted(version)`` ({name: sha256},
        empty for an unknown version); returns how many were deleted."""
        removed = 0
        try:
            dirs = [d for d in self.cache_dir.iterdir() if d.is_dir() and d.name.startswith("v")]
        except OSError:
            return 0
        for directory in dirs:
            try:
                version = int(directory.name[1:])
            except ValueError:
                continue
            keep = wanted(version)
            for path in directory.iterdir():
                try:
                    if keep.get(path.name) != sha256_hex(path.read_bytes()):
                        path.unlink()
                        removed += 1
                except OSError as exc:
                    log.warning("artifact_cache_sweep_failed path=%s error=%s", path, exc)
        return removed
