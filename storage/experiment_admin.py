"""Managing A/B experiments: create, stop, report and promote the winner with its evidence.

The one implementation behind ``streamrec experiment ...`` and the admin endpoints
(``serving/admin_experiments.py``): it works on the ports (experiment store, model registry,
impression and event stores), so the in-memory twins test it. Refusals are ``ExperimentError``s
with a stable ``code`` and a message that says what to do; the CLI prints them, the API maps their
kind to a status (invalid 422, not found 404, conflict 409).

Promotion: the variant must be the report's significant winner (``core.experiment_report``) unless
forced; its model version must download intact; the evidence (the report, who decided, forced or
not) is recorded on the model record first (``record_online_evidence``), then the version becomes
champion (scrubbed of erased users first, like every promotion), then the experiment is marked
``promoted`` with the winner, the version and the same evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import StreamrecError
from core.experiment_report import ExperimentReport
from core.experiments import Experiment, Variant
from storage.errors import ArtifactUnavailable, ErasureIncomplete, ModelNotFound, RegistryError
from storage.experiments import ExperimentExists, ExperimentStore, UnknownExperiment
from storage.model_erasure import FileScrub, promote_erased
from storage.model_registry import ModelRecord, ModelRegistry
from storage.online_reads import ImpressionReads, OnlineEventReads, read_experiment_report

log = logging.getLogger(__name__)


class ExperimentError(StreamrecError):
    def __init__(self, code: str, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # The experiment's report, for a refused promotion (the reason is in it).
        self.report = report


class ExperimentInvalid(ExperimentError):
    """The request is wrong: fix it and send it again."""


class ExperimentNotFound(ExperimentError):
    """No experiment (or variant) by that name."""


class ExperimentConflict(ExperimentError):
    """Not possible in the experiment's current state (or the registry's)."""


@dataclass(frozen=True)
class Promotion:
    experiment: Experiment
    record: ModelRecord
    previous_version: int | None


def override_hint(variant: Variant) -> str:
    settings = ", ".join(f"STREAMREC_SERVING__{k.upper()}={v}" for k, v in sorted(variant.overrides.items()))
    return f"set {settings} on every serving replica" if settings else ""


@dataclass
class ExperimentAdmin:
    experiments: ExperimentStore
    registry: ModelRegistry
    impressions: ImpressionReads
    events: OnlineEventReads
    # The erased shoppers (the event store's ``erased_users``): a promoted version is scrubbed of them.
    erased_users: Callable[[], set[str]]
    # Rewrites a version's files without the erased shoppers (model.artifact_erasure.scrub_files).
    scrub: FileScrub
    # Impressions expire after this long (serving.impressions.retention_days): reports read no further.
    retention_s: float | None = None

    def create(self, experiment: Experiment) -> Experiment:
        """Store a new running experiment after checking its model versions and its surfaces."""
        for variant in experiment.variants:
            if variant.model_version is None:
                continue
            try:
                self.registry.get(int(variant.model_version))
            except ModelNotFound:
                raise ExperimentInvalid(
                    "unknown_model_version",
                    f"variant {variant.name!r}: model v{variant.model_version} does not exist "
                    "(see `streamrec model list`)",
                ) from None
        for other in self.experiments.list():
            shared = sorted(set(other.surfaces) & set(experiment.surfaces))
            if other.status == "running" and shared and other.experiment_id != experiment.experiment_id:
                raise ExperimentConflict(
                    "surface_taken",
                    f"experiment {other.experiment_id!r} is running on {', '.join(shared)}; "
                    f"stop it first (`streamrec experiment stop {other.experiment_id}`)",
                )
        fresh = experiment.model_copy(
            update={
                "status": "running",
                "created_at": None,
                "stopped_at": None,
                "winner": None,
                "promoted_version": None,
                "evidence": None,
            }
        )
        try:
            created = self.experiments.create(fresh)
        except ExperimentExists:
            raise ExperimentConflict(
                "experiment_exists",
                f"experiment {experiment.experiment_id!r} already exists; ids are never reused, pick another",
            ) from None
        log.info(
            "event=experiment_created experiment_id=%s variants=%s surfaces=%s",
            created.experiment_id,
            ",".join(f"{v.name}:{v.share:g}:{v.model_version or 'champion'}" for v in created.variants),
            ",".join(created.surfaces),
        )
        return created

    def get(self, experiment_id: str) -> Experiment:
        try:
            return self.experiments.get(experiment_id)
        except UnknownExperiment:
            raise ExperimentNotFound(
                "unknown_experiment",
                f"experiment {experiment_id!r} does not exist (see `streamrec experiment list`)",
            ) from None

    def list(self) -> list[Experiment]:
        return self.experiments.list()

    def report(self, experiment_id: str, metric: str = "ctr") -> tuple[Experiment, ExperimentReport]:
        experiment = self.get(experiment_id)
        report = read_experiment_report(
            experiment, self.impressions, self.events, metric=metric, retention_s=self.retention_s
        )
        return experiment, report

    def stop(self, experiment_id: str) -> Experiment:
        """Stop splitting traffic (serving drops it within its poll); stopping twice changes nothing."""
        experiment = self.get(experiment_id)
        if experiment.status != "running":
            return experiment
        stopped = self.experiments.update(experiment_id, status="stopped", stopped_at=datetime.now(UTC))
        log.info("event=experiment_stopped experiment_id=%s", experiment_id)
        return stopped

    def promote(
        self,
        experiment_id: str,
        variant: str | None = None,
        *,
        force: bool = False,
        metric: str = "ctr",
        decided_by: str = "admin",
    ) -> Promotion:
        current = self.get(experiment_id)
        if current.status == "promoted":
            raise ExperimentConflict(
                "already_promoted",
                f"experiment {experiment_id!r} was promoted already "
                f"(variant {current.winner}, model v{current.promoted_version})",
            )
        experiment, report = self.report(experiment_id, metric)
        shown = report.to_dict()
        name = variant or report.winner
        if name is None:
            raise ExperimentConflict(
                "no_winner",
                f"no variant to promote: {report.verdict}; name one with --variant to promote it anyway "
                "with --force",
                shown,
            )
        chosen = experiment.variant(name)
        if chosen is None:
            names = ", ".join(v.name for v in experiment.variants)
            raise ExperimentNotFound(
                "unknown_variant", f"experiment {experiment_id!r} has no variant {name!r} (it has {names})"
            )
        if name != report.winner and not force:
            raise ExperimentConflict(
                "not_significant",
                f"{name} is not the significant winner on {metric} ({report.verdict}); "
                "pass force to promote it anyway",
                shown,
            )
        if chosen.model_version is None:
            hint = override_hint(chosen)
            what = f"differs only by setting overrides: {hint}" if hint else "serves the champion already"
            raise ExperimentConflict(
                "nothing_to_promote",
                f"variant {name!r} {what}; stop the experiment (`streamrec experiment stop {experiment_id}`)",
            )
        version = int(chosen.model_version)
        evidence = {
            "experiment_id": experiment_id,
            "variant": name,
            "metric": metric,
            "forced": force and name != report.winner,
            "decided_by": decided_by,
            "decided_at": datetime.now(UTC).isoformat(),
            "report": shown,
        }
        reason = f"won experiment {experiment_id} ({name})" + (" [forced]" if evidence["forced"] else "")
        record, previous = self._make_champion(version, evidence, reason)
        updated = self.experiments.update(
            experiment_id,
            status="promoted",
            stopped_at=experiment.stopped_at or datetime.now(UTC),
            winner=name,
            promoted_version=str(version),
            evidence=evidence,
        )
        log.info(
            "event=experiment_promoted experiment_id=%s variant=%s version=%d forced=%s",
            experiment_id,
            name,
            version,
            evidence["forced"],
        )
        return Promotion(updated, record, previous)

    def _make_champion(
        self, version: int, evidence: dict[str, Any], reason: str
    ) -> tuple[ModelRecord, int | None]:
        try:
            before = self.registry.champion()
            # Refuse a version serving could not download intact, before anything is written.
            self.registry.load_files(version)
            self.registry.record_online_evidence(version, evidence)
            record = promote_erased(self.registry, version, reason, self.erased_users(), self.scrub)
        except ModelNotFound as exc:
            raise ExperimentConflict("unknown_model", f"not promoted: {exc}") from exc
        except ArtifactUnavailable as exc:
            raise ExperimentConflict("artifact_unavailable", f"not promoted: {exc}") from exc
        except ErasureIncomplete as exc:
            raise ExperimentConflict("erasure_incomplete", f"not promoted: {exc}; retry") from exc
        except RegistryError as exc:
            raise ExperimentConflict("registry_conflict", f"not promoted: {exc}") from exc
        return record, before.version if before is not None else None
