"""An artifact's files without some users' rows: what erasure does to a published model.

A trained artifact keeps one row per training user (``user_ids.npy`` and the matching row of
``user_embeddings.npy``); dropping the rows keeps the artifact loadable and everyone else's answers
unchanged. ``storage.model_erasure`` applies this to every stored version (the registry is its business,
the artifact format this module's).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from model.artifact import ModelArtifact, read_npy

USER_IDS_FILE = "user_ids.npy"


def scrub_files(files: dict[str, bytes], erased: set[str]) -> tuple[dict[str, bytes] | None, int]:
    """The artifact's files without the erased users' rows, and how many rows went; (None, 0) when
    none of them is in it. Raises ``ArtifactError`` for an artifact that cannot be read."""
    users = read_npy(files, USER_IDS_FILE) if USER_IDS_FILE in files else None
    if users is None or not erased or len(users) == 0:
        return None, 0
    drop = np.isin(users, np.array(sorted(erased), dtype=str))
    if not drop.any():
        return None, 0
    artifact = ModelArtifact.from_files(files)
    keep = ~np.isin(artifact.user_ids, np.array(sorted(erased), dtype=str))
    scrubbed = dataclasses.replace(
        artifact,
        user_ids=artifact.user_ids[keep],
        user_embeddings=np.ascontiguousarray(artifact.user_embeddings[keep]),
    )
    out = dict(scrubbed.to_files())
    # Files published beside the model's own (segment_popularity.json: aggregates over segments of
    # many shoppers, no per-user row) are kept as they are.
    out.update({name: data for name, data in files.items() if name not in out})
    return out, int((~keep).sum())
