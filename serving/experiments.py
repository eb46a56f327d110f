"""A/B experiments in serving: the running experiments, their variants' models, and each request's arm.

A background task polls ``ExperimentStore.list()`` every ``serving.experiments.poll_s`` (the way
``ModelHolder`` polls the registry) and keeps, per surface, the experiment that splits it
(``core.experiments.running_for``). Every model version a running variant names, and the shadow
version, is loaded beside the champion with the champion's loader, in a worker thread, once per
version; a version that fails to load or validate is remembered and never retried by this process,
and versions no experiment needs any more are dropped.

On the request path ``choose`` is pure and cheap: a stable hash assigns the shopper
(``core.experiments.assign``); a variant whose model is not loaded (still loading, refused, missing
from the registry) is answered by the control variant, and the answer says so (``fallback``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from core.errors import DependencyUnavailable, ModelError
from core.experiments import Experiment, ExperimentSurface, Variant, assign, running_for
from serving.metrics import ServingMetrics
from serving.model_holder import Loader
from serving.model_port import LoadedModel
from serving.polling import poll_in_thread
from storage.errors import RegistryError
from storage.experiments import ExperimentStore
from storage.model_registry import ModelRegistry

log = logging.getLogger(__name__)
SURFACES: tuple[str, ...] = get_args(ExperimentSurface)


@dataclass(frozen=True, slots=True)
class Arm:
    """What answers one request: the model, and the experiment and variant it belongs to (if any)."""

    loaded: LoadedModel | None
    experiment_id: str | None = None
    variant: str | None = None
    # Why the assigned variant could not be served (the control variant answered instead).
    fallback: str | None = None
    # Per-variant overrides of serving settings (core.experiments.ALLOWED_OVERRIDES).
    session_weight: float | None = None

    @property
    def cache_key(self) -> str | None:
        """What the result cache must tell apart: lists of two variants never share an entry."""
        return None if self.variant is None else f"{self.experiment_id}/{self.variant}"

    def fields(self) -> dict[str, Any]:
        """The answer's experiment fields: ``experiment_id`` and ``variant`` always, the fallback if any."""
        out: dict[str, Any] = {"experiment_id": self.experiment_id, "variant": self.variant}
        if self.fallback is not None:
            out["variant_fallback"] = self.fallback
        return out


class ExperimentHolder:
    def __init__(
        self,
        store: ExperimentStore,
        registry: ModelRegistry,
        loader: Loader,
        metrics: ServingMetrics,
        champion: Callable[[], LoadedModel | None],
        shadow_version: str | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.loader = loader
        self.metrics = metrics
        self.champion = champion
        self.shadow_version = shadow_version
        # Replaced whole by each poll (one reference assignment): requests never see half an update.
        self.by_surface: dict[str, Experiment] = {}
        self.models: dict[str, LoadedModel] = {}
        # Versions that failed to load or validate: never retried (like ModelHolder.refused).
        self.refused: dict[str, str] = {}
        # Versions that could not be loaded this time (registry down, not published): retried.
        self.problems: dict[str, str] = {}
        self.last_error: str | None = None

    # ------------------------------------------------------------ request path

    def choose(self, surface: str, user_id: str | None) -> Arm:
        champion = self.champion()
        experiment = self.by_surface.get(surface)
        if experiment is None or user_id is None:
            return Arm(champion)
        variant = assign(experiment, user_id)
        loaded, problem = self._model_for(variant, champion)
        if problem is None:
            return _arm(experiment, variant, loaded)
        control = experiment.control_variant
        reason = f"variant {variant.name!r} needs {problem}"
        if variant.name != control.name:
            loaded, control_problem = self._model_for(control, champion)
            if control_problem is None:
                self.metrics.fallbacks.labels(kind="variant_control").inc()
                return _arm(experiment, control, loaded, f"{reason}; served by control {control.name!r}")
            reason = f"{reason}; control {control.name!r} needs {control_problem}"
        self.metrics.fallbacks.labels(kind="variant_champion").inc()
        return _arm(experiment, control, champion, f"{reason}; served by the champion")

    def model(self, version: str) -> LoadedModel | None:
        """A loaded version (the champion's own when it is that version), else None."""
        champion = self.champion()
        if champion is not None and champion.version == version:
            return champion
        return self.models.get(version)

    def _model_for(
        self, variant: Variant, champion: LoadedModel | None
    ) -> tuple[LoadedModel | None, str | None]:
        version = variant.model_version
        if version is None:
            return champion, None
        found = self.model(version)
        if found is not None:
            return found, None
        why = self.refused.get(version) or self.problems.get(version) or "it is not loaded yet"
        return None, f"model version {version}, which is unavailable: {why}"

    # ------------------------------------------------------------ polling (worker thread)

    def poll_once(self) -> None:
        """Re-read the experiments and load the versions they need. Blocking: run in a thread."""
        try:
            experiments = self.store.list()
        except Exception as exc:
            # Keep serving the experiments known so far: a MongoDB outage does not end a test.
            self.last_error = f"experiments unreadable: {exc}"
            log.warning("event=experiments_poll_failed error=%s", exc)
        else:
            self.by_surface = {s: e for s in SURFACES if (e := running_for(experiments, s)) is not None}
            self.last_error = None
        wanted = {
            v.model_version
            for e in self.by_surface.values()
            for v in e.variants
            if v.model_version is not None
        }
        if self.shadow_version is not None:
            wanted.add(self.shadow_version)
        champion = self.champion()
        for version in sorted(wanted):
            if version in self.models or version in self.refused:
                continue
            if champion is not None and champion.version == version:
                continue  # served from the champion itself; loaded here once the champion changes
            self._load(version)
        gone = set(self.models) - wanted
        if gone:
            self.models = {v: m for v, m in self.models.items() if v in wanted}
            log.info("event=variant_models_dropped versions=%s", ",".join(sorted(gone)))

    def _load(self, version: str) -> None:
        try:
            record = self.registry.get(int(version))
            files = self.registry.load_files(record.version)
            loaded = self.loader(files, record)
        except (ModelError, ValueError, KeyError) as exc:
            # A corrupt or invalid artifact (ArtifactUnavailable included, as ModelHolder treats it).
            self._refuse(version, str(exc))
            return
        except (RegistryError, DependencyUnavailable) as exc:
            # Not published (yet), or MongoDB unreachable: tried again at the next poll.
            if self.problems.get(version) != str(exc):
                log.warning("event=variant_model_unavailable version=%s error=%s", version, exc)
            self.problems[version] = str(exc)
            return
        except Exception as exc:  # unknown: refuse too, so a crash-on-load artifact is not retried
            self._refuse(version, f"{type(exc).__name__}: {exc}")
            return
        self.problems.pop(version, None)
        self.models = {**self.models, version: loaded}
        log.info("event=variant_model_loaded version=%s", version)

    def _refuse(self, version: str, reason: str) -> None:
        self.refused[version] = reason
        self.metrics.model_load_failures.inc()
        log.error("event=variant_model_refused version=%s error=%s", version, reason)

    async def run(self, interval_s: float) -> None:
        await poll_in_thread(self.poll_once, interval_s, "experiments_poll_crashed")


def _arm(
    experiment: Experiment, variant: Variant, loaded: LoadedModel | None, fallback: str | None = None
) -> Arm:
    weight = variant.overrides.get("session_weight")
    return Arm(
        loaded,
        experiment.experiment_id,
        variant.name,
        fallback,
        float(weight) if isinstance(weight, int | float) and not isinstance(weight, bool) else None,
    )
