"""Exceptions raised by the model package; serving and retrain catch these by type.

``ModelError`` and ``ArtifactError`` live in core/errors.py (storage raises ``ArtifactError`` too).
"""

from __future__ import annotations

from core.errors import ModelError


class DegenerateModelError(ModelError):
    """Training produced NaN/inf or collapsed (all-zero) embeddings; the model must not be published."""


class EmptyDataError(ModelError):
    """There is nothing to train on (no users or no items after filtering)."""
