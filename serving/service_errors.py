"""What the serving services raise when they cannot answer: domain errors, not HTTP ones.

Each carries a stable ``code`` (part of the API contract: clients branch on it) and a message a
person can act on. ``serving.errors`` maps each kind to an HTTP status in one table; the services
never name a status.
"""

from __future__ import annotations

from core.errors import StreamrecError


class ServiceError(StreamrecError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(ServiceError):
    """The request names an item or a model version that does not exist."""


class Rejected(ServiceError):
    """The request is well formed but asks for something the domain refuses (a bad event, too many)."""


class Conflict(ServiceError):
    """The request cannot be done in the current state (an artifact unreadable, nothing to roll back)."""


class Unavailable(ServiceError):
    """A dependency (MongoDB, Redis, Kafka, a loaded model) is missing; retrying later may work."""
