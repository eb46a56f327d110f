"""Erasure, model info, champion changes (promote, rollback), retrain requests and readiness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from model.artifact_erasure import scrub_files
from serving.model_holder import ModelHolder
from serving.popularity import RealtimeSnapshots
from serving.ports import ErasurePort
from serving.service_errors import Conflict, NotFound, Unavailable
from storage.errors import (
    ArtifactUnavailable,
    ErasureIncomplete,
    ModelNotFound,
    RealtimeUnavailable,
    RegistryError,
)
from storage.impressions import ImpressionStore
from storage.kafka_producer import ProducerHealth
from storage.model_erasure import promote_erased, rollback_erased
from storage.model_registry import ModelRegistry
from storage.realtime_reader import RealtimeReader
from storage.retrain_requests import RetrainRequests
from storage.shoppers import ShopperStore

log = logging.getLogger(__name__)
READY_CHECK_TIMEOUT_S = 2.0
MAX_VERSION = 2**63 - 1  # versions are stored as MongoDB 8-byte ints


@dataclass(frozen=True)
class Readiness:
    ready: bool
    # full | degraded (Redis down) | popularity (no model yet) | unavailable (cannot answer)
    mode: str
    checks: dict[str, str]


class AdminService:
    def __init__(
        self,
        holder: ModelHolder,
        reader: RealtimeReader,
        erasures: ErasurePort,
        retrain: RetrainRequests,
        *,
        snapshots: RealtimeSnapshots | None = None,
        ingest_health: Callable[[], ProducerHealth] | None = None,
        impressions: ImpressionStore | None = None,
        shoppers: ShopperStore | None = None,
    ) -> None:
        self.holder = holder
        self.reader = reader
        self.erasures = erasures
        # What the shopper was shown is personal data too: erased with their events.
        self.impressions = impressions
        # So are the shopper's stored attributes (PUT /v1/users/{user_id}).
        self.shoppers = shoppers
        self.retrain = retrain
        self.snapshots = snapshots
        self.ingest_health = ingest_health

    async def erase_user(self, user_id: str) -> dict[str, Any]:
        try:
            # MongoDB first: the erasures record is what keeps the user out of future training.
            events_deleted = await run_in_threadpool(self.erasures.erase_user, user_id)
            impressions_deleted = (
                await run_in_threadpool(self.impressions.erase_user, user_id) if self.impressions else 0
            )
            attributes_deleted = (
                await run_in_threadpool(self.shoppers.erase_user, user_id) if self.shoppers else 0
            )
        except Exception as exc:
            raise Unavailable(
                "mongodb_unavailable",
                f"cannot erase user: the event store is unavailable ({exc}); retry",
            ) from exc
        loaded = self.holder.current
        had_embedding = loaded is not None and loaded.model.user_vector(user_id) is not None
        self.holder.mark_erased(user_id)
        try:
            state = await self.reader.erase_user(user_id)
        except RealtimeUnavailable as exc:
            raise Unavailable(
                "redis_unavailable",
                f"{events_deleted} stored events were erased but Redis state could not be ({exc}); "
                "retry the DELETE (it is idempotent)",
            ) from exc
        log.info(
            "event=user_erased user_id=%s events=%d impressions=%d redis_keys=%d cached=%d",
            user_id,
            events_deleted,
            impressions_deleted,
            state.state_keys,
            state.cached_results,
        )
        return {
            "user_id": user_id,
            "deleted": {
                "events": events_deleted,
                "impressions": impressions_deleted,
                "attributes": attributes_deleted,
                "realtime_keys": state.state_keys,
                "cached_results": state.cached_results,
                "embeddings_suppressed": int(had_embedding),
            },
        }

    def model_info(self) -> dict[str, Any]:
        loaded = self.holder.current
        if loaded is None:
            reason = self.holder.last_error or "no champion model has been published yet"
            raise Unavailable("no_model", f"no model is loaded: {reason}")
        return {
            "version": loaded.version,
            "metrics": loaded.metrics,
            "trained_at": loaded.trained_at.isoformat() if loaded.trained_at else None,
            "loaded_at": loaded.loaded_at.isoformat() if loaded.loaded_at else None,
            "n_items": loaded.model.n_items,
            "index": loaded.index,
            "refused_versions": dict(self.holder.refused),
        }

    async def promote(self, version: int, reason: str) -> dict[str, Any]:
        return await run_in_threadpool(self._change_champion, version, reason)

    async def rollback(self, reason: str) -> dict[str, Any]:
        return await run_in_threadpool(self._change_champion, None, reason)

    def _change_champion(self, version: int | None, reason: str) -> dict[str, Any]:
        """What ``streamrec model promote|rollback`` do: the version must download intact, and a
        version brought back is first scrubbed of users erased since it was published. Serving
        replicas (this one included) load the new champion through their usual model polling."""
        registry: ModelRegistry = self.holder.registry
        if version is not None and version > MAX_VERSION:
            # MongoDB cannot even look it up (8-byte ints): no such version, not an outage.
            raise NotFound("unknown_model", f"model v{version} does not exist (see `streamrec model list`)")
        try:
            before = registry.champion()
            erased = self.erasures.erased_users()
            if version is None:
                record = rollback_erased(registry, reason, erased, scrub_files)
            else:
                registry.load_files(version)
                record = promote_erased(registry, version, reason, erased, scrub_files)
        except ModelNotFound as exc:
            raise NotFound("unknown_model", str(exc)) from exc
        except ArtifactUnavailable as exc:
            raise Conflict("artifact_unavailable", f"not promoted: {exc}") from exc
        except ErasureIncomplete as exc:
            raise Conflict("erasure_incomplete", f"{exc}; retry once the artifact is readable") from exc
        except RegistryError as exc:
            code = "nothing_to_roll_back" if version is None else "registry_conflict"
            raise Conflict(code, str(exc)) from exc
        except Exception as exc:  # DependencyUnavailable, or a pymongo error outside its guard
            raise Unavailable(
                "mongodb_unavailable", f"cannot change the champion: MongoDB is unavailable ({exc})"
            ) from exc
        log.info(
            "event=champion_changed_over_http version=%d previous=%s reason=%s",
            record.version,
            before.version if before is not None else None,
            reason,
        )
        loaded = self.holder.current
        return {
            "version": str(record.version),
            "previous_version": str(before.version) if before is not None else None,
            "reason": record.reason,
            "loaded_version": loaded.version if loaded is not None else None,
        }

    async def request_retrain(self, reason: str) -> dict[str, Any]:
        try:
            made = await run_in_threadpool(self.retrain.request, reason)
        except Exception as exc:
            raise Unavailable(
                "mongodb_unavailable",
                f"cannot record the retrain request: MongoDB is unavailable ({exc})",
            ) from exc
        return {"request_id": made.id, "status": made.status, "reason": made.reason}

    async def readiness(self) -> Readiness:
        """Ready means "can answer a recommendation request", not "every dependency is up".

        A loaded model answers even with Redis down (degraded); Redis alone answers with popularity
        (no model yet: a fresh install that receives events only over HTTP must be ready, or no
        event ever arrives to train the first model). Only with neither, nor a popularity snapshot
        kept from earlier, can the process not answer. MongoDB and the Kafka ingest path are
        reported but never take reads out of service.
        """
        checks: dict[str, str] = {}
        model = self.holder.current
        checks["model"] = (
            f"ok (version {model.version})"
            if model is not None
            else f"none: {self.holder.last_error or 'waiting for a champion'}; serving popularity"
        )
        # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can lose a cancel (see
        # storage.realtime_reader.raise_lost_cancel).
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                await self.reader.ping()
            checks["redis"] = "ok"
        except (RealtimeUnavailable, TimeoutError) as exc:
            checks["redis"] = f"unreachable: {exc or type(exc).__name__}; serving degraded"
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                await run_in_threadpool(self.erasures.ping)
            checks["mongodb"] = "ok"
        except Exception as exc:
            checks["mongodb"] = f"unreachable: {exc or type(exc).__name__}"
        if self.ingest_health is not None:
            # May ask the broker for metadata (bounded by the producer's 1 s timeout): off the loop.
            ingest = await run_in_threadpool(self.ingest_health)
            checks["ingest"] = ingest.describe()
        redis_ok = checks["redis"] == "ok"
        kept = self.snapshots is not None and bool(self.snapshots.peek_popular("7d"))
        if model is not None:
            mode = "full" if redis_ok else "degraded"
        elif redis_ok:
            mode = "popularity"
        elif kept:
            mode = "degraded"
        else:
            mode = "unavailable"
        return Readiness(ready=mode != "unavailable", mode=mode, checks=checks)
