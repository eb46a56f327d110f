"""Tuned configurations in the model registry: what ``streamrec retrain --tune`` chose and why.

Each tuning run records one ``TunedConfig``: the modelling settings it chose (``ModelSettings`` field
names and values), their validation NDCG@10, the operator's settings' score on the same validation, how
many trials fitted in the time budget, and the data it was tuned on. Retraining reads the latest one
(``retrain.tuning.effective_settings``). MongoDB keeps them in ``model_tuned_configs`` beside the
registry's ``models`` (``storage.tuned_configs_mongo``); ``MemoryTunedConfigs`` is the in-memory twin.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from storage.errors import RegistryError

COLLECTION = "model_tuned_configs"
# What a caller hands to ``record``; ``seq`` and ``created_at`` are the store's.
TUNED_FIELDS = (
    "params",
    "score",
    "baseline_score",
    "trials",
    "budget_s",
    "duration_s",
    "validation",
    "data_window",
)


@dataclass(frozen=True)
class TunedConfig:
    seq: int  # 1, 2, ...: the order of tuning runs
    created_at: datetime
    params: dict[str, Any]  # ModelSettings field -> chosen value
    score: float  # validation NDCG@10 of ``params``
    baseline_score: float | None = None  # the operator's settings on the same validation
    trials: int = 0
    budget_s: float | None = None
    duration_s: float | None = None
    validation: dict[str, Any] = field(default_factory=dict)  # users, events, cut and the search space
    data_window: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


class TunedConfigs(Protocol):
    def record(self, tuned: dict[str, Any]) -> TunedConfig:
        """Store a tuning run's result (keys ``TUNED_FIELDS``; ``params`` and ``score`` required)."""

    def latest(self) -> TunedConfig | None: ...

    def list(self, limit: int = 20) -> list[TunedConfig]:
        """The newest ``limit`` records, newest first."""


def check_tuned(tuned: dict[str, Any]) -> None:
    unknown = set(tuned) - set(TUNED_FIELDS)
    if unknown:
        raise RegistryError(
            f"unknown tuned-config fields {sorted(unknown)}; allowed: {', '.join(TUNED_FIELDS)}"
        )
    params = tuned.get("params")
    if not isinstance(params, dict) or not params:
        raise RegistryError("a tuned config needs a non-empty params mapping")
    score = tuned.get("score")
    if not isinstance(score, int | float) or not math.isfinite(score):
        raise RegistryError(f"a tuned config needs a finite validation score, got {score!r}")


def tuned_from_doc(doc: dict[str, Any]) -> TunedConfig:
    created = doc["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return TunedConfig(
        seq=int(doc["_id"]),
        created_at=created,
        params=dict(doc.get("params") or {}),
        score=float(doc["score"]),
        baseline_score=None if doc.get("baseline_score") is None else float(doc["baseline_score"]),
        trials=int(doc.get("trials") or 0),
        budget_s=doc.get("budget_s"),
        duration_s=doc.get("duration_s"),
        validation=dict(doc.get("validation") or {}),
        data_window=dict(doc.get("data_window") or {}),
    )


def new_tuned_doc(seq: int, tuned: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    check_tuned(tuned)
    at = now or datetime.now(UTC)
    # MongoDB keeps milliseconds: truncated here, the twin and the adapter hand back the same record.
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return {"_id": seq, "created_at": at, **tuned}


class MemoryTunedConfigs:
    """The in-memory twin (unit tests, the demo without MongoDB)."""

    def __init__(self) -> None:
        self._docs: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, tuned: dict[str, Any]) -> TunedConfig:
        with self._lock:
            doc = new_tuned_doc(len(self._docs) + 1, dict(tuned))
            self._docs.append(doc)
        return tuned_from_doc(doc)

    def latest(self) -> TunedConfig | None:
        with self._lock:
            return tuned_from_doc(self._docs[-1]) if self._docs else None

    def list(self, limit: int = 20) -> list[TunedConfig]:
        with self._lock:
            return [tuned_from_doc(d) for d in reversed(self._docs[-limit:] if limit > 0 else [])]
