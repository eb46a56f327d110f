"""The tooling's settings: the product's Settings plus the dev stack's section (STREAMREC_DEVSTACK__*).

The product never reads the devstack section; its Settings ignores those variables when it finds them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from core.errors import StreamrecError
from core.settings import Settings


class MissingTool(StreamrecError):
    """An executable the dev stack or a benchmark needs is not installed."""


class DevstackSettings(BaseModel):
    dir: Path = Path(".devstack")
    kafka_port: int = 19092
    mongo_port: int = 27018
    redis_port: int = 6380


class ToolingSettings(Settings):
    devstack: DevstackSettings = Field(default_factory=DevstackSettings)
