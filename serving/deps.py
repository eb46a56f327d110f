"""FastAPI dependencies: what the routes need, typed, read from the app in one place.

``create_app`` puts settings and metrics on ``app.state`` when it builds the app (``serving.auth``
reads the keyring itself), and the lifespan adds the services it builds over the adapters. Handlers
declare what they use (``read: ReadDep``); the hot recommendations route, which skips dependency
resolution (``serving.fast_params.LeanRoute``), calls the same functions with its ``Request``.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request

from core.settings import Settings
from serving.adapters import RecentUsers
from serving.admin import AdminService
from serving.discovery import DiscoveryService
from serving.ingest import IngestService
from serving.metrics import ServingMetrics
from serving.model_holder import ModelHolder
from serving.popularity import RealtimeSnapshots
from serving.service import ReadService
from storage.experiment_admin import ExperimentAdmin

T = TypeVar("T")


def _state(request: Request, name: str, kind: type[T]) -> T:
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        # Only an app used outside its lifespan (or built by something other than create_app) gets here.
        raise RuntimeError(f"app.state.{name} is {type(value).__name__}, not {kind.__name__}")
    return value


def get_settings(request: Request) -> Settings:
    return _state(request, "settings", Settings)


def get_metrics(request: Request) -> ServingMetrics:
    return _state(request, "metrics", ServingMetrics)


def get_read(request: Request) -> ReadService:
    return _state(request, "read", ReadService)


def get_discovery(request: Request) -> DiscoveryService:
    return _state(request, "discovery", DiscoveryService)


def get_ingest(request: Request) -> IngestService:
    return _state(request, "ingest", IngestService)


def get_admin(request: Request) -> AdminService:
    return _state(request, "admin", AdminService)


def get_experiment_admin(request: Request) -> ExperimentAdmin:
    return _state(request, "experiment_admin", ExperimentAdmin)


def get_holder(request: Request) -> ModelHolder:
    return _state(request, "holder", ModelHolder)


def get_snapshots(request: Request) -> RealtimeSnapshots:
    return _state(request, "snapshots", RealtimeSnapshots)


def get_recent_users(request: Request) -> RecentUsers | None:
    source: RecentUsers | None = getattr(request.app.state, "recent_users", None)
    return source


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
ReadDep = Annotated[ReadService, Depends(get_read)]
DiscoveryDep = Annotated[DiscoveryService, Depends(get_discovery)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
AdminDep = Annotated[AdminService, Depends(get_admin)]
ExperimentAdminDep = Annotated[ExperimentAdmin, Depends(get_experiment_admin)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
SnapshotsDep = Annotated[RealtimeSnapshots, Depends(get_snapshots)]
RecentUsersDep = Annotated[RecentUsers | None, Depends(get_recent_users)]
