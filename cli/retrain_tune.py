"""`streamrec retrain --tune` and the scheduled tuning of the retrain loop; `streamrec model tuned`.

The search itself is ``retrain.tuning``; this module decides when it runs, prints what it chose and
hands retraining the effective model settings (tuned values, operator-set fields winning).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.app import model_app
from cli.context import configure_logging, load_settings, mongo_guard

if TYPE_CHECKING:
    from core.settings import ModelSettings, Settings
    from retrain.pipeline import RetrainConfig
    from storage.tuned_configs import TunedConfig

log = logging.getLogger(__name__)
console = Console()


def open_tuned_configs(settings: Settings) -> Any:
    from storage.tuned_configs_mongo import open_tuned_configs as open_store

    return open_store(settings)


class Tuning:
    """When to tune before a retrain run, and the model settings each run trains with.

    ``first`` (``--tune``) tunes before the first run whatever the schedule; afterwards
    ``retrain.tune_every`` decides. A failed scheduled search is logged and the run goes on with the
    latest recorded configuration (or the operator's settings)."""

    def __init__(
        self,
        settings: Settings,
        source: Any,
        store: Any,
        config: RetrainConfig,
        *,
        budget_s: float | None,
        trials: int | None,
        first: bool,
    ) -> None:
        from core.duration import parse_duration

        self.settings = settings
        self.source = source
        self.store = store
        self.config = config
        self.budget_s = float(budget_s if budget_s is not None else settings.retrain.tune_budget_s)
        self.trials = int(trials if trials is not None else settings.retrain.tune_trials)
        every = settings.retrain.tune_every
        self.every_s = parse_duration(every) if every else None
        self._pending = first

    def run_now(self) -> TunedConfig:
        """Tune and record; raises ``retrain.tuning.TuningFailed`` (a clear message, no traceback)."""
        from retrain.tuning import run_tuning

        console.print(
            f"tuning the model settings: at most {self.trials} trials, no new trial after "
            f"{self.budget_s:.0f}s",
            highlight=False,
        )
        with console.status("tuning"):
            tuned = run_tuning(
                self.source,
                self.store,
                self.settings.model,
                self.config,
                budget_s=self.budget_s,
                trials=self.trials,
            )
        print_tuned(tuned)
        return tuned

    def model_settings(self) -> ModelSettings:
        """The settings the next retrain run trains with, tuning first when due."""
        from retrain.tuning import TuningFailed, effective_settings, tune_due

        latest = self.store.latest()
        if self._pending or tune_due(latest, self.every_s):
            self._pending = False
            try:
                latest = self.run_now()
            except TuningFailed as exc:
                console.print(f"[yellow]tuning skipped:[/] {exc}", highlight=False)
                log.warning("tune_failed action=train_with_previous_config error=%s", exc)
        effective = effective_settings(self.settings.model, latest)
        if latest is not None:
            log.info("retrain_uses_tuned_config seq=%d", latest.seq)
        return effective


def print_tuned(tuned: TunedConfig) -> None:
    base = "-" if tuned.baseline_score is None else f"{tuned.baseline_score:.4f}"
    console.print(
        f"[green]tuned config #{tuned.seq}[/]: validation NDCG@10 {tuned.score:.4f} "
        f"(current settings {base}) after {tuned.trials} trials in {tuned.duration_s or 0:.0f}s",
        highlight=False,
    )
    console.print("  " + "  ".join(f"{k}={v}" for k, v in sorted(tuned.params.items())), highlight=False)
    edges = tuned.validation.get("at_edge") or []
    if edges:
        console.print(f"  [yellow]at the edge of the search range:[/] {', '.join(edges)}", highlight=False)


@model_app.command("tuned")
def model_tuned(
    limit: int = typer.Option(10, "--limit", min=1, help="How many of the newest records."),
) -> None:
    """The tuned configurations `retrain --tune` recorded, newest first (retraining uses the newest;
    a STREAMREC_MODEL__<FIELD> set in the environment or .env wins over its value)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    store = open_tuned_configs(settings)
    try:
        with mongo_guard(settings):
            records = store.list(limit)
    finally:
        store.close()
    if not records:
        console.print("no tuned configuration yet; run `streamrec retrain --tune`")
        return
    table = Table(title="tuned configurations")
    for column in ("#", "created", "val ndcg@10", "before", "trials"):
        table.add_column(column, no_wrap=True)
    table.add_column("params", overflow="fold")
    for rec in records:
        table.add_row(
            str(rec.seq),
            rec.created_at.strftime("%m-%d %H:%M"),
            f"{rec.score:.4f}",
            "-" if rec.baseline_score is None else f"{rec.baseline_score:.4f}",
            str(rec.trials),
            " ".join(f"{k}={v}" for k, v in sorted(rec.params.items())),
        )
    console.print(table)
