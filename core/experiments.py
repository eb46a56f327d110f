"""A/B experiments: what one is, and which variant a shopper gets (pure, no IO).

Assignment is a stable hash of ``experiment_id`` and ``user_id``: the same shopper gets the same
variant on every replica and after every restart, and two experiments split traffic independently.
A variant serves a registered model version (``model_version``) or, with ``model_version`` None,
the champion (a control arm, or an arm that differs only by ``overrides``).

Stored in MongoDB (collection ``experiments``, ``_id`` = experiment id) by ``storage.experiments``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ExperimentStatus = Literal["running", "stopped", "promoted"]
# Anchored: pydantic's ``pattern`` searches, so an unanchored one let "a/b c" through (ids go in URLs).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
# 2**64 buckets: shares are honoured to far better than any experiment can measure.
_BUCKETS = 1 << 64
# Surfaces an experiment may split (the ones whose list comes from a model).
ExperimentSurface = Literal["recommendations", "similar"]


# Serving settings a variant may override, with their allowed range (serving applies them per request).
ALLOWED_OVERRIDES: dict[str, tuple[float, float]] = {"session_weight": (0.0, 1.0)}


def override_problem(overrides: dict[str, Any]) -> str | None:
    """Why these overrides cannot be served, or None."""
    for name, value in overrides.items():
        if name not in ALLOWED_OVERRIDES:
            allowed = ", ".join(sorted(ALLOWED_OVERRIDES))
            return f"override {name!r} is not supported (supported: {allowed})"
        low, high = ALLOWED_OVERRIDES[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            return f"override {name!r} must be a number in [{low:g}, {high:g}], got {value!r}"
    return None


def _default_surfaces() -> list[ExperimentSurface]:
    return ["recommendations"]


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=_NAME.pattern)]
    # A registered model version (an integer as text); None serves the champion.
    model_version: Annotated[str, Field(pattern=r"^[0-9]{1,18}$")] | None = None
    share: Annotated[float, Field(gt=0.0, le=1.0)]
    # Named serving setting overrides for this arm, e.g. {"session_weight": 0.8} (flat scalars).
    overrides: dict[str, float | int | bool | str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_overrides(self) -> Variant:
        if (problem := override_problem(self.overrides)) is not None:
            raise ValueError(problem)
        return self


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment_id: Annotated[str, Field(pattern=_NAME.pattern)]
    variants: Annotated[list[Variant], Field(min_length=2, max_length=10)]
    # The variant the others are compared with (the first one when not given).
    control: str | None = None
    surfaces: list[ExperimentSurface] = Field(default_factory=_default_surfaces)
    status: ExperimentStatus = "running"
    created_at: datetime | None = None
    stopped_at: datetime | None = None
    description: Annotated[str, Field(max_length=1000)] = ""
    # Set by ``promote``: the winning variant, the version made champion and the online evidence.
    winner: str | None = None
    promoted_version: str | None = None
    evidence: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        total = sum(v.share for v in self.variants)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"variant shares must add up to 1, got {total:g}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants ({', '.join(names)})")
        return self

    @property
    def control_variant(self) -> Variant:
        name = self.control or self.variants[0].name
        return next(v for v in self.variants if v.name == name)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


def bucket(experiment_id: str, user_id: str) -> float:
    """A uniform number in [0, 1) that depends only on the experiment and the shopper."""
    digest = hashlib.blake2b(f"{experiment_id}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _BUCKETS


def assign(experiment: Experiment, user_id: str) -> Variant:
    """The shopper's variant: variants own consecutive slices of [0, 1) in their listed order."""
    point = bucket(experiment.experiment_id, user_id)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.share
        if point < edge:
            return variant
    return experiment.variants[-1]  # shares add to 1 within float error


def running_for(experiments: list[Experiment], surface: str) -> Experiment | None:
    """The experiment that splits ``surface`` now: the newest running one (one per surface)."""
    live = [e for e in experiments if e.status == "running" and surface in e.surfaces]
    if not live:
        return None
    return max(live, key=lambda e: (e.created_at is not None, e.created_at or 0, e.experiment_id))
