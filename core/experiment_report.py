"""An A/B experiment's report: each variant's metrics, its difference against control, the split's
health and a winner suggestion (pure; metric definitions in ``core.online_report``).

* Per variant: the online metrics of its impressions, and ``users`` (distinct shoppers shown it).
* Against control, for each rate: treatment minus control, Newcombe's hybrid score 95% interval and
  a two-sided p-value (z-test, Fisher's exact for small counts; ``core.online_stats``).
* ``srm_p_value``: chi-square goodness of fit of the users per variant against the configured
  shares. Below ``SRM_ALPHA`` (0.001) the split is broken and no winner is suggested.
* ``winner``: suggested only when significant on the chosen ``metric``: p below 0.05 (divided by the
  number of treatments, Bonferroni, when there are several) and the interval excludes zero. The
  best treatment that beats control wins; control wins when every treatment is worse than it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.experiments import Experiment
from core.online_report import METRICS, Doc, Outcomes, Tally
from core.online_stats import ALPHA, SRM_ALPHA, Difference, difference, srm_p_value


@dataclass(frozen=True)
class ExperimentReport:
    experiment_id: str
    metric: str
    since: datetime
    until: datetime
    variants: list[dict[str, Any]]
    srm_p_value: float | None
    winner: str | None
    verdict: str
    # Impressions that name this experiment but a variant it does not have (a renamed arm).
    unknown_variant_impressions: int

    @property
    def srm_detected(self) -> bool:
        return self.srm_p_value is not None and self.srm_p_value < SRM_ALPHA

    def variant(self, name: str) -> dict[str, Any] | None:
        return next((v for v in self.variants if v["name"] == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "metric": self.metric,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "variants": self.variants,
            "srm_p_value": self.srm_p_value,
            "srm_detected": self.srm_detected,
            "winner": self.winner,
            "verdict": self.verdict,
            "unknown_variant_impressions": self.unknown_variant_impressions,
        }


def _comparison(diff: Difference | None, alpha: float) -> dict[str, Any] | None:
    if diff is None:
        return None
    low, high = diff.ci95
    return {
        "diff": diff.diff,
        "ci95": [low, high],
        "p_value": diff.p_value,
        "test": diff.test,
        "significant": diff.p_value < alpha and (low > 0.0 or high < 0.0),
    }


def experiment_report(
    experiment: Experiment,
    impressions: Iterable[Doc],
    events: Iterable[Doc],
    *,
    metric: str = "ctr",
    since: datetime,
    until: datetime,
) -> ExperimentReport:
    """The report over the experiment's live impressions (others in ``impressions`` are skipped)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    outcomes = Outcomes.of(events)
    tallies: dict[str, Tally] = defaultdict(Tally)
    names = {v.name for v in experiment.variants}
    unknown = 0
    for imp in impressions:
        if imp.get("shadow") or imp.get("experiment_id") != experiment.experiment_id:
            continue
        name = imp.get("variant")
        if name not in names:
            unknown += 1
            continue
        tallies[str(name)].add(imp.get("user_id"), outcomes.by_list.get(str(imp["_id"]), {}))

    control = experiment.control_variant
    treatments = [v for v in experiment.variants if v.name != control.name]
    alpha = ALPHA / max(1, len(treatments))  # Bonferroni over the treatments
    base = tallies[control.name]
    rows: list[dict[str, Any]] = []
    for v in experiment.variants:
        tally = tallies[v.name]
        versus = None
        if v.name != control.name:
            versus = {
                m: _comparison(
                    difference(tally.hits[m], tally.impressions, base.hits[m], base.impressions), alpha
                )
                for m in METRICS
            }
        rows.append(
            {
                "name": v.name,
                "model_version": v.model_version,
                "share": v.share,
                "overrides": dict(v.overrides),
                "control": v.name == control.name,
                **tally.metrics(),
                "vs_control": versus,
            }
        )
    srm = srm_p_value(
        [len(tallies[v.name].users) for v in experiment.variants], [v.share for v in experiment.variants]
    )
    winner, verdict = _decide(rows, control.name, metric, srm)
    return ExperimentReport(
        experiment.experiment_id, metric, since, until, rows, srm, winner, verdict, unknown
    )


def _decide(
    rows: list[dict[str, Any]], control: str, metric: str, srm: float | None
) -> tuple[str | None, str]:
    """The winner suggestion and a sentence saying why (or why there is none)."""
    if srm is None:
        return None, "no impressions of this experiment yet"
    if srm < SRM_ALPHA:
        return None, (
            f"sample ratio mismatch (p={srm:.2g}): users per variant do not match the shares; "
            "fix assignment or logging before trusting any difference"
        )
    compared = [(r["name"], (r["vs_control"] or {}).get(metric)) for r in rows if not r["control"]]
    better = [(name, c) for name, c in compared if c is not None and c["significant"] and c["diff"] > 0]
    if better:
        name, c = max(better, key=lambda nc: nc[1]["diff"])
        return name, (
            f"{name} beats {control} on {metric} by {c['diff']:+.4f} "
            f"(95% CI [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], p={c['p_value']:.2g})"
        )
    worse = [c for _, c in compared if c is not None and c["significant"] and c["diff"] < 0]
    if compared and len(worse) == len(compared):
        return control, f"every variant is worse than {control} on {metric}: keep {control}"
    return None, f"no significant difference on {metric} yet: keep it running or stop it without a winner"
