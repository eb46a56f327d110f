"""Exceptions raised by the model package; serving and retrain catch these by type."""

from __future__ import annotations


class ModelError(Exception):
    """Base class for every error the model package raises on purpose."""


class DegenerateModelError(ModelError):
    """Training produced NaN/inf or collapsed (all-zero) embeddings; the model must not be published."""


class ArtifactError(ModelError):
    """An artifact is missing, corrupt or incompatible with this code."""


class EmptyDataError(ModelError):
    """There is nothing to train on (no users or no items after filtering)."""
