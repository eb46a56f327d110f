"""Errors shared by every role. Each carries a message a person can act on."""

from __future__ import annotations


class StreamrecError(Exception):
    """Base class: the CLI prints the message as one line instead of a traceback."""


class ConfigError(StreamrecError):
    """A setting is missing or inconsistent."""


class DependencyUnavailable(StreamrecError):
    """A server (Kafka, MongoDB, Redis) cannot be reached; retriable."""


class MissingTool(StreamrecError):
    """An executable the dev stack needs is not installed."""
