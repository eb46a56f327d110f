"""One retraining run as a function over ports: event source, model registry and trainer.

Decision (documented in the README's retraining section): the published model is the one the gate
judged, trained on everything except the held-out most recent events. Refitting on all events after
the gate would publish a model nobody evaluated, and would let the next run's champion score on events
it trained on. Serving folds in each shopper's latest events at request time, so the held-out period
still shapes recommendations; only items first seen in it wait for the next run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from core.errors import ArtifactError, ModelError, StreamrecError
from core.event_table import EventTable
from core.settings import EventWeights, RetrainSettings
from model.artifact_erasure import scrub_files
from model.segment_popularity import FILE_NAME as SEGMENTS_FILE
from model.segment_popularity import new_user_first_items
from retrain.event_source import EventSource, read_window
from retrain.gate import (
    GATE_K,
    GateDecision,
    HoldoutSplit,
    NotEnoughData,
    RanksHistories,
    decide,
    gate_rankings,
    holdout_split,
    ranking_metrics,
)
from retrain.segments import SegmentConfig, segment_stage
from retrain.stages import StageClock
from storage.model_erasure import erasure_mark, scrub_registry
from storage.model_registry import ModelRecord, ModelRegistry

log = logging.getLogger(__name__)

Outcome = Literal["promoted", "rejected", "not_judged", "failed"]
# (epoch starting at 1, total epochs, training loss)
EpochCallback = Callable[[int, int, float], None]


class FilesBeside(Mapping[str, bytes]):
    """A model's files with more beside them (``extra`` wins a shared name), read through."""

    def __init__(self, model: Mapping[str, bytes], extra: Mapping[str, bytes]) -> None:
        self.model, self.extra = model, extra

    def __getitem__(self, name: str) -> bytes:
        return self.extra[name] if name in self.extra else self.model[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.extra
        yield from (name for name in self.model if name not in self.extra)

    def __len__(self) -> int:
        return len(set(self.model) | set(self.extra))


class CandidateModel(RanksHistories, Protocol):
    """What retrain needs from a model: ``model.trained_model.TrainedModel`` implements it."""

    def to_files(
        self, version: int, *, metrics: dict[str, Any], data_window: dict[str, Any], trained_at: datetime
    ) -> Mapping[str, bytes]: ...

    @property
    def config(self) -> dict[str, Any]: ...


class Trainer(Protocol):
    @property
    def weights(self) -> EventWeights:
        """Per-event-type weights the model folds histories in with; the gate folds them in alike."""

    def fit(
        self, train: EventTable, on_epoch: EpochCallback | None = None, stages: StageClock | None = None
    ) -> CandidateModel:
        """Raises ``model.errors.DegenerateModelError`` (NaN/collapsed) or ``EmptyDataError``.

        ``stages`` records the fit's own stages (build, train, index) in the run's report."""

    def load(self, files: dict[str, bytes]) -> CandidateModel:
        """Raises ``core.errors.ArtifactError`` for a corrupt or incompatible artifact."""


class RetrainFailed(StreamrecError):
    """A run produced no publishable model; nothing was published."""


@dataclass(frozen=True)
class RetrainConfig:
    window_days: float | None
    holdout_fraction: float
    gate_tolerance: float
    gate_max_users: int = 5000
    gate_min_users: int = 50
    gate_min_events: int = 200
    read_slice_hours: float = 6.0

    @classmethod
    def from_settings(cls, settings: RetrainSettings) -> RetrainConfig:
        return cls(
            window_days=settings.window_days,
            holdout_fraction=settings.holdout_fraction,
            gate_tolerance=settings.gate_tolerance,
            gate_min_users=settings.gate_min_users,
            gate_min_events=settings.gate_min_events,
            read_slice_hours=settings.read_slice_hours,
        )


@dataclass
class RetrainResult:
    outcome: Outcome
    n_events: int
    duration_s: float
    version: int | None = None
    decision: GateDecision | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # Wall time and peak RSS per stage (``retrain.stages.StageClock.report``); read separately from the
    # stages after it, since its speed is the event store's.
    run_report: dict[str, Any] = field(default_factory=dict)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat()


def _score_champion(
    champ: ModelRecord | None, registry: ModelRegistry, trainer: Trainer, split: HoldoutSplit
) -> tuple[float | None, str | None]:
    """The champion's NDCG@10 on the same users, or a note saying why it could not be scored."""
    if champ is None:
        return None, None
    try:
        model = trainer.load(registry.load_files(champ.version))
    except ArtifactError as exc:
        log.warning("champion_unusable version=%d error=%s", champ.version, exc)
        return None, f"champion v{champ.version} cannot be loaded ({exc})"
    recs = gate_rankings(model, split.histories, split.users, GATE_K, trainer.weights)
    return ranking_metrics(recs, split.targets)[f"ndcg@{GATE_K}"], None


def run_retrain(
    source: EventSource,
    registry: ModelRegistry,
    trainer: Trainer,
    config: RetrainConfig,
    *,
    now: datetime | None = None,
    on_epoch: EpochCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
    segments: SegmentConfig | None = None,
) -> RetrainResult:
    """Read the window, train, gate against the champion, publish; raises ``RetrainFailed``.

    A failed fit publishes nothing. A candidate that loses the gate is published as ``rejected`` with
    its figures and the reason, so it can be inspected or promoted by hand; one the gate had too little
    evidence to judge is published as ``not_judged`` beside the champion (or becomes champion, marked
    not judged, when there is none).

    With ``segments``, popularity per shopper segment is computed and judged against global
    popularity for new shoppers (``retrain.segments``); the decision goes into the metrics and the
    lists into the artifact (``segment_popularity.json``).
    """
    started = time.monotonic()
    clock = StageClock()
    stage = on_stage or (lambda _name: None)
    stage("reading events")
    now = now or datetime.now(UTC)
    since = None if config.window_days is None else now - timedelta(days=config.window_days)
    with clock.stage("read"):
        erased = source.erased_users()
        table = read_window(source, since, now, erased, timedelta(hours=config.read_slice_hours))
    n_events = len(table)
    log.info("retrain_data events=%d erased_users=%d since=%s until=%s", n_events, len(erased), since, now)
    with clock.stage("scrub"):
        # Older versions (the champion scored below, retired ones an operator may promote) lose erased
        # users before anything reads them; a version that cannot be scrubbed is retried next run.
        scrub_registry(registry, erased, scrub_files)
    if n_events == 0:
        raise RetrainFailed(
            f"no events between {since or 'the beginning'} and {now.isoformat()}; nothing to train on"
        )

    champ = registry.champion()
    champ_until = champ.data_window.get("train_until_ms") if champ is not None else None
    try:
        with clock.stage("split"):
            split = holdout_split(table, config.holdout_fraction, champ_until, config.gate_max_users)
            # Shoppers new in the held-out part: what segment popularity is judged on.
            firsts = new_user_first_items(table, split.cut_ms) if segments is not None else {}
            del table
    except NotEnoughData as exc:
        raise RetrainFailed(f"cannot train: {exc}") from exc
    stage(f"training on {len(split.train)} events")
    try:
        candidate = trainer.fit(split.train, on_epoch, clock)
    except ModelError as exc:
        raise RetrainFailed(f"training failed, nothing published: {type(exc).__name__}: {exc}") from exc

    stage(f"gating on {len(split.targets)} held-out users")
    users = split.users
    with clock.stage("gate"):
        cand_recs = gate_rankings(candidate, split.histories, users, GATE_K, trainer.weights)
        cand_metrics = ranking_metrics(cand_recs, split.targets)
        champ_ndcg, note = _score_champion(champ, registry, trainer, split)
    champ_version = champ.version if champ is not None else None
    decision = decide(
        cand_metrics[f"ndcg@{GATE_K}"],
        champ_ndcg,
        config.gate_tolerance,
        champion_version=champ_version if note is None else None,
        eval_users=len(users),
        eval_events=split.eval_events,
        min_users=config.gate_min_users,
        min_events=config.gate_min_events,
        champion_note=note,
    )
    if not math.isfinite(decision.candidate_ndcg):
        raise RetrainFailed("the candidate's held-out NDCG@10 is not finite; nothing published")

    trained_at = datetime.now(UTC)
    train_until_ms = int(split.train.ts_ms.max())
    data_window = {
        "since": since.isoformat() if since else None,
        "until": now.isoformat(),
        "train_until_ms": train_until_ms,
        "train_until": _iso_ms(train_until_ms),
        "holdout_from_ms": split.cut_ms,
        "eval_from_ms": split.eval_start_ms,
        "events": n_events,
        "train_events": len(split.train),
        "erased_users_excluded": len(erased),
    }
    metrics: dict[str, Any] = {f"holdout_{k}": v for k, v in cand_metrics.items()}
    extra_files: dict[str, bytes] = {}
    if segments is not None:
        with clock.stage("segments"):
            seg = segment_stage(segments, split.train, firsts, trainer.weights, erased)
        metrics["segment_popularity"] = seg.summary()
        extra_files[SEGMENTS_FILE] = seg.to_bytes()
    gate = {
        "candidate_ndcg": decision.candidate_ndcg,
        "champion_ndcg": decision.champion_ndcg,
        "champion_version": champ_version,
        "tolerance": config.gate_tolerance,
        "eval_users": len(users),
        "eval_events": split.eval_events,
        "min_users": config.gate_min_users,
        "min_events": config.gate_min_events,
        "judged": decision.judged,
        "decision": decision.outcome,
        "promoted": decision.promote,
    }
    stage("publishing")
    with clock.stage("publish"):
        version = _publish(
            registry, candidate, decision, gate, metrics, data_window, trained_at, erased, extra_files
        )
    report = clock.report()
    report["read_s"] = round(clock.wall_s("read"), 3)
    report["after_read_s"] = round(clock.wall_s(*(n for n in clock.stages if n != "read")), 3)
    outcome: Outcome = "promoted" if decision.promote else "rejected" if decision.judged else "not_judged"
    log.info(
        "retrain_done version=%d outcome=%s read_s=%.1f after_read_s=%.1f peak_rss_mib=%.0f reason=%s",
        version,
        outcome,
        report["read_s"],
        report["after_read_s"],
        report["peak_rss_mib"],
        decision.reason,
    )
    return RetrainResult(
        outcome=outcome,
        n_events=n_events,
        duration_s=time.monotonic() - started,
        version=version,
        decision=decision,
        metrics=metrics,
        run_report=report,
    )


def _publish(
    registry: ModelRegistry,
    candidate: CandidateModel,
    decision: GateDecision,
    gate: dict[str, Any],
    metrics: dict[str, Any],
    data_window: dict[str, Any],
    trained_at: datetime,
    erased: set[str],
    extra_files: dict[str, bytes] | None = None,
) -> int:
    """Publish the candidate with the gate's verdict; returns its version."""
    n_events = data_window["events"]
    version = registry.next_version()
    # Beside the model's own files (the registry checks each file's sha256). A view, not a copy: the
    # model's files are made one at a time as the registry reads them (model.artifact.ArtifactFiles).
    files = FilesBeside(
        candidate.to_files(version, metrics=metrics, data_window=data_window, trained_at=trained_at),
        extra_files or {},
    )
    record = {
        "trained_at": trained_at,
        "metrics": metrics,
        "config": candidate.config,
        "data_window": data_window,
        "n_events": n_events,
        "gate": gate,
        "reason": decision.reason,
        # Trained without the erased users: the files already reflect this erasure set.
        "erasure": erasure_mark(erased),
    }
    registry.publish(files, record, version=version)
    if decision.promote:
        registry.promote(version, decision.reason)
    elif decision.judged:
        registry.reject(version, decision.reason)
    else:
        registry.mark_not_judged(version, decision.reason)
    return version
