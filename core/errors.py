"""Errors shared by every role. Each carries a message a person can act on."""

from __future__ import annotations


class StreamrecError(Exception):
    """Base class: the CLI prints the message as one line instead of a traceback."""


class ConfigError(StreamrecError):
    """A setting is missing or inconsistent."""


class NotInstalled(StreamrecError):
    """A command needs an optional part that this installation lacks (e.g. PyTorch, the `train` extra,
    which the lean serving image leaves out)."""


class DependencyUnavailable(StreamrecError):
    """A server (Kafka, MongoDB, Redis) cannot be reached; retriable."""


# The model family is not a StreamrecError: the retrain command reports these as a failed run, not as
# a setting or server to fix. It lives here, not in model/, because storage raises ArtifactError too (a
# registry file that is missing or corrupt) and storage must not import model/.
class ModelError(Exception):
    """Base class for every error about a model (training, artifacts) raised on purpose."""


class ArtifactError(ModelError):
    """An artifact is missing, corrupt or incompatible with this code."""
