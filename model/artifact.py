"""A trained model on disk or in GridFS: numpy arrays (.npy, no pickle), JSON metadata, a FAISS index.

Layout (one flat namespace, so it maps onto files in a directory or onto GridFS blobs alike):
manifest.json, config.json, metrics.json, <array>.npy for each array, and optionally index.faiss.
The manifest records the format version, shapes and a sha256 of every file so truncation is caught.

Format 2 adds the optional content model for cold start (``model.content``): content_weights.npy (the
ridge map, features x (dim + dim - 1): serving item embedding then input embedding) and
content_vocab.json (the featurizer's vocabulary). Format 1 artifacts (no content model) still load.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ArtifactError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
ARRAYS = ("item_ids", "user_ids", "item_embeddings", "user_embeddings", "input_embeddings")
INDEX_FILE = "index.faiss"
CONTENT_WEIGHTS = "content_weights"
CONTENT_VOCAB = "content_vocab.json"


@dataclass
class ModelArtifact:
    version: int
    item_ids: np.ndarray  # numpy unicode
    user_ids: np.ndarray  # numpy unicode
    item_embeddings: np.ndarray  # (n_items, dim) float32, scored by inner product (last column = bias)
    user_embeddings: np.ndarray  # (n_users, dim) float32 (last column = 1)
    input_embeddings: np.ndarray  # (n_items, dim - 1) float32, the user tower used by fold-in
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    trained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    data_window: dict[str, Any] = field(default_factory=dict)
    index_bytes: bytes | None = None  # faiss.serialize_index output, optional
    # The cold-start content map (model.content): (n_features, 2 * dim - 1) float32 and its vocabulary
    # as JSON; both or neither.
    content_weights: np.ndarray | None = None
    content_vocab: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def dim(self) -> int:
        return int(self.item_embeddings.shape[1])

    def validate(self) -> None:
        n_items, n_users = len(self.item_ids), len(self.user_ids)
        if self.item_ids.ndim != 1 or self.user_ids.ndim != 1:
            raise ArtifactError("item_ids and user_ids must be 1-d arrays")
        if self.item_ids.dtype.kind != "U" or self.user_ids.dtype.kind != "U":
            raise ArtifactError("item_ids and user_ids must be numpy unicode arrays")
        if self.item_embeddings.ndim != 2 or self.item_embeddings.shape[0] != n_items:
            raise ArtifactError(
                f"item_embeddings has shape {self.item_embeddings.shape}; "
                f"expected ({n_items}, dim) to match the id map"
            )
        dim = self.item_embeddings.shape[1]
        if self.user_embeddings.shape != (n_users, dim):
            raise ArtifactError(
                f"user_embeddings has shape {self.user_embeddings.shape}; expected {(n_users, dim)}"
            )
        if self.input_embeddings.shape != (n_items, dim - 1):
            raise ArtifactError(
                f"input_embeddings has shape {self.input_embeddings.shape}; expected {(n_items, dim - 1)}"
            )
        for name in ("item_embeddings", "user_embeddings", "input_embeddings"):
            arr = getattr(self, name)
            if arr.dtype != np.float32:
                raise ArtifactError(f"{name} must be float32, got {arr.dtype}")
            if not np.isfinite(arr).all():
                raise ArtifactError(f"{name} contains NaN or inf")
        if len(np.unique(self.item_ids)) != n_items:
            raise ArtifactError("item_ids contains duplicates")
        self._validate_content(dim)
        if not isinstance(self.version, int) or isinstance(self.version, bool):
            raise ArtifactError(f"version must be an integer, got {self.version!r}")

    def _validate_content(self, dim: int) -> None:
        if (self.content_weights is None) != (self.content_vocab is None):
            raise ArtifactError("content_weights and content_vocab come together or not at all")
        w = self.content_weights
        if w is None:
            return
        if w.ndim != 2 or w.shape[1] != 2 * dim - 1 or w.dtype != np.float32:
            raise ArtifactError(
                f"content_weights must be float32 of shape (features, {2 * dim - 1}), got {w.dtype} {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ArtifactError("content_weights contains NaN or inf")

    def to_files(self, index: Callable[[], bytes] | None = None) -> ArtifactFiles:
        """The artifact's files (``index`` makes index.faiss when the artifact holds no index bytes)."""
        return ArtifactFiles(self, index)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> ModelArtifact:
        manifest = _json(files, "manifest.json")
        if not isinstance(manifest, dict):
            raise ArtifactError("manifest.json must hold a JSON object")
        fmt = manifest.get("format_version")
        if fmt not in READABLE_FORMATS:
            readable = ", ".join(map(str, READABLE_FORMATS))
            raise ArtifactError(f"unknown artifact format_version {fmt!r}; this code reads {readable}")
        checksums = manifest.get("sha256")
        if not isinstance(checksums, dict):
            raise ArtifactError("manifest.json lacks the sha256 map")
        for name, digest in checksums.items():
            if name not in files:
                raise ArtifactError(f"artifact file {name} is missing")
            if hashlib.sha256(files[name]).hexdigest() != digest:
                raise ArtifactError(
                    f"artifact file {name} is corrupt (sha256 mismatch; truncated or altered)"
                )
        arrays: dict[str, Any] = {name: read_npy(files, f"{name}.npy") for name in ARRAYS}
        for key in ("n_items", "n_users"):
            ids = arrays["item_ids" if key == "n_items" else "user_ids"]
            if manifest.get(key) != len(ids):
                raise ArtifactError(f"manifest says {key}={manifest.get(key)} but the id map has {len(ids)}")
        try:
            version = int(manifest["version"])
            trained_at = str(manifest["trained_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest.json is missing or has a bad field: {exc}") from exc
        return cls(
            version=version,
            config=_json(files, "config.json"),
            metrics=_json(files, "metrics.json"),
            trained_at=trained_at,
            data_window=dict(manifest.get("data_window") or {}),
            index_bytes=files.get(INDEX_FILE),
            **_content(files),
            **arrays,
        )

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self.to_files()
        # The manifest goes last so a reader never sees a manifest pointing at files not yet written.
        for name in sorted(files, key=lambda n: n == "manifest.json"):
            (directory / name).write_bytes(files[name])
        logger.info("artifact_saved dir=%s version=%d items=%d", directory, self.version, len(self.item_ids))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelArtifact:
        directory = Path(directory)
        if not (directory / "manifest.json").is_file():
            raise ArtifactError(f"{directory} holds no manifest.json; not a model artifact")
        files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        return cls.from_files(files)


class ArtifactFiles(Mapping[str, bytes]):
    """An artifact's files by name, each serialized when it is read and not kept.

    At 1M items x 512 factors the embedding files are ~2 GiB each: a dict of them would hold a second
    copy of every matrix while retrain publishes (and the dev MongoDB server buffers the upload). Here a
    file exists only while its reader holds it; the manifest's checksums are computed once, up front.
    Reading a file twice serializes it twice, so ``dict(files)`` where a plain dict is wanted."""

    def __init__(self, artifact: ModelArtifact, index: Callable[[], bytes] | None = None) -> None:
        def json_file(value: Any) -> Callable[[], bytes]:
            return lambda: json.dumps(value, sort_keys=True, default=str).encode()

        def array_file(name: str) -> Callable[[], bytes]:
            return lambda: _npy_bytes(getattr(artifact, name))

        makers: dict[str, Callable[[], bytes]] = {f"{name}.npy": array_file(name) for name in ARRAYS}
        if artifact.content_weights is not None and artifact.content_vocab is not None:
            makers[f"{CONTENT_WEIGHTS}.npy"] = array_file("content_weights")
            vocab = artifact.content_vocab.encode()
            makers[CONTENT_VOCAB] = lambda: vocab
        makers["config.json"] = json_file(artifact.config)
        makers["metrics.json"] = json_file(artifact.metrics)
        stored = artifact.index_bytes
        if stored is not None:
            makers[INDEX_FILE] = lambda: stored
        elif index is not None:
            makers[INDEX_FILE] = index
        checksums = {name: hashlib.sha256(make()).hexdigest() for name, make in makers.items()}
        manifest = json_file(
            {
                "format_version": FORMAT_VERSION,
                "version": artifact.version,
                "trained_at": artifact.trained_at,
                "data_window": artifact.data_window,
                "n_items": len(artifact.item_ids),
                "n_users": len(artifact.user_ids),
                "dim": artifact.dim,
                "sha256": checksums,
            }
        )()
        makers["manifest.json"] = lambda: manifest
        self._makers = makers

    def __getitem__(self, name: str) -> bytes:
        return self._makers[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _content(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The optional content model (format 2); a format-1 artifact has none."""
    if f"{CONTENT_WEIGHTS}.npy" not in files and CONTENT_VOCAB not in files:
        return {}
    try:
        vocab = files[CONTENT_VOCAB].decode()
    except (KeyError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"artifact file {CONTENT_VOCAB} is missing or not UTF-8: {exc}") from exc
    return {"content_weights": read_npy(files, f"{CONTENT_WEIGHTS}.npy"), "content_vocab": vocab}


def _json(files: Mapping[str, bytes], name: str) -> Any:
    if name not in files:
        raise ArtifactError(f"artifact file {name} is missing")
    try:
        return json.loads(files[name])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact file {name} is not valid JSON: {exc}") from exc


def read_npy(files: Mapping[str, bytes], name: str) -> np.ndarray:
    """The array stored in ``files[name]``, read in place: a read-only view over the file's bytes, so a
    1M-item model does not hold each embedding matrix twice (once as bytes, once as an array) while it
    loads. Object arrays are refused, as ``np.load(allow_pickle=False)`` refuses them."""
    if name not in files:
        raise ArtifactError(f"artifact file {name} is missing")
    data = files[name]
    try:
        header = io.BytesIO(data)
        major, _minor = np.lib.format.read_magic(header)
        read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}
        if major not in read_header:
            raise ValueError(f"unsupported .npy format version {major}")
        shape, fortran_order, dtype = read_header[major](header)
        if dtype.hasobject:
            raise ValueError("object arrays cannot be loaded without pickle")
        count = int(np.prod(shape, dtype=np.int64))
        offset = header.tell()
        if len(data) - offset != count * dtype.itemsize:
            raise ValueError(f"expected {count * dtype.itemsize} data bytes, found {len(data) - offset}")
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"artifact file {name} is not a readable .npy array: {exc}") from exc
    return flat.reshape(shape, order="F" if fortran_order else "C")
