"""Errors the storage adapters raise on purpose; callers catch them by type.

Shared families stay in core/errors.py (``DependencyUnavailable`` for an unreachable server,
``ArtifactError`` for a bad model artifact); the errors here subclass them where a caller that only
knows the family must still catch them.
"""

from __future__ import annotations

from bson.errors import InvalidDocument

from core.errors import ArtifactError, DependencyUnavailable, StreamrecError


class Unstorable(InvalidDocument):
    """The server refused a document for what it holds (not for an outage); retrying cannot help.

    A subclass of bson's ``InvalidDocument`` so callers catch one family for client-side encoding
    errors and server-side rejections alike.
    """


class SendFailed(DependencyUnavailable):
    """Some Kafka messages were not acknowledged; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class RealtimeUnavailable(DependencyUnavailable):
    """Redis cannot be reached (or the circuit breaker is open)."""


class RegistryError(StreamrecError):
    """A registry operation cannot be done (unknown version, nothing to roll back to...)."""


class ModelNotFound(RegistryError):
    """No model with that version was published."""


class ArtifactUnavailable(RegistryError, ArtifactError):
    """An artifact file is missing or its bytes do not match the sha256 recorded at publish time."""


class ErasureIncomplete(StreamrecError):
    """A model version could not be checked or rewritten, so it may still hold an erased user."""
