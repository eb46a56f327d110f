"""Request and response shapes of the online-report and experiment admin endpoints.

The computations (``core.online_report``, ``core.experiment_report``, ``core.shadow_report``) return
plain dicts; these models describe them for the OpenAPI document (the schema tests hold the server to
it). Metric definitions are in ``core.online_report``'s docstring and README, *Measuring online*.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from core.experiments import ALLOWED_OVERRIDES, NAME_PATTERN, Experiment, ExperimentSurface, Variant
from serving.schemas import ErrorBody

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
Interval = Annotated[list[float], Field(min_length=2, max_length=2, description="95% interval [low, high]")]
Metric = Literal["ctr", "add_to_cart_rate", "conversion_rate"]

# One optional field per supported override, with its range: the document lists exactly what serving applies.
OverridesIn: Any = create_model(
    "OverridesIn",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (float | None, Field(default=None, ge=low, le=high))  # type: ignore[call-overload]
        for name, (low, high) in ALLOWED_OVERRIDES.items()
    },
)


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    model_version: Annotated[str, Field(pattern=r"^[0-9]{1,18}$")] | None = Field(
        default=None, description="a published model version; null serves the champion"
    )
    share: float = Field(gt=0.0, le=1.0, description="the variant's share of traffic; all add up to 1")
    overrides: OverridesIn | None = Field(default=None, description="serving settings this variant changes")

    def to_variant(self) -> Variant:
        overrides = {} if self.overrides is None else self.overrides.model_dump(exclude_none=True)
        return Variant(
            name=self.name, model_version=self.model_version, share=self.share, overrides=overrides
        )


class ExperimentIn(BaseModel):
    """A new experiment. Rules the schema cannot state are answered 422 with the reason: shares add
    up to 1, variant names are unique, ``control`` names a variant, each model version exists."""

    model_config = ConfigDict(extra="forbid")

    experiment_id: Name
    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    control: Name | None = Field(default=None, description="the variant compared with; the first when null")
    surfaces: list[ExperimentSurface] = Field(default=["recommendations"], min_length=1, max_length=2)
    description: str = Field(default="", max_length=1000)


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str | None = Field(
        default=None, max_length=64, description="the variant to promote; the report's winner when null"
    )
    force: bool = Field(
        default=False, description="promote even when the variant is not the significant winner"
    )
    metric: Metric = Field(default="ctr", description="the metric the winner is decided on")


class _Rates(BaseModel):
    impressions: int
    users: int = Field(description="distinct shoppers among the impressions")
    clicks: int
    add_to_carts: int
    purchases: int
    ctr: float | None = Field(description="impressions with >= 1 attributed click / impressions")
    ctr_ci95: Interval | None
    add_to_cart_rate: float | None
    add_to_cart_rate_ci95: Interval | None
    conversion_rate: float | None = Field(
        description="impressions with >= 1 attributed purchase / impressions"
    )
    conversion_rate_ci95: Interval | None


class OnlineRowOut(_Rates):
    group: str | int | None = Field(description="the model version, variant, surface or position")
    experiment_id: str | None = Field(description="grouped by variant: the variant's experiment")


class OnlineOut(BaseModel):
    by: Literal["model_version", "variant", "surface", "position"]
    since: str
    until: str
    impressions: int
    attributed_events: int
    unmatched_events: int = Field(description="attributed events whose impression is older than since")
    rows: list[OnlineRowOut]


class ComparisonOut(BaseModel):
    diff: float = Field(description="variant minus control")
    ci95: Interval
    p_value: float
    test: Literal["z", "fisher", "mcnemar"]
    significant: bool


class VariantReportOut(_Rates):
    name: str
    model_version: str | None
    share: float
    overrides: dict[str, float | int | bool | str]
    control: bool
    vs_control: dict[str, ComparisonOut | None] | None = Field(description="per metric; null for control")


class ExperimentReportOut(BaseModel):
    experiment_id: str
    metric: Metric
    since: str
    until: str
    variants: list[VariantReportOut]
    srm_p_value: float | None = Field(description="chi-square test of users per variant against the shares")
    srm_detected: bool
    winner: str | None
    verdict: str
    unknown_variant_impressions: int


class ExperimentListOut(BaseModel):
    experiments: list[Experiment]


class ExperimentDetailOut(BaseModel):
    experiment: Experiment
    report: ExperimentReportOut


class PromotionOut(BaseModel):
    experiment: Experiment
    version: str = Field(description="the champion now")
    previous_version: str | None


class PromotionRefusedOut(BaseModel):
    error: ErrorBody
    report: ExperimentReportOut | None = Field(default=None, description="why: the experiment's report")


class PairedOut(BaseModel):
    diff: float = Field(description="shadow hit rate minus live hit rate on the same shoppers")
    ci95: Interval
    p_value: float
    test: Literal["mcnemar"]


class ShadowOut(BaseModel):
    since: str
    until: str
    window_s: float
    shadow_impressions: int
    shoppers: int
    pairs: int = Field(description="shoppers whose next click or purchase came within the window")
    missing_live: int
    shadow_versions: list[str]
    live_versions: list[str]
    shadow_hits: int
    live_hits: int
    shadow_hit_rate: float | None
    shadow_hit_rate_ci95: Interval | None
    live_hit_rate: float | None
    live_hit_rate_ci95: Interval | None
    difference: PairedOut | None
