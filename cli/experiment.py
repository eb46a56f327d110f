"""`streamrec experiment create|list|show|stop|promote`: A/B experiments, from the command line.

The same operations as the ``/v1/admin/experiments`` endpoints (``storage.experiment_admin``), on
MongoDB directly. Wrong input (a bad ``--variant``, an unknown id or model version) exits 2; a
refusal in the current state (a duplicate id, a busy surface, no significant winner) exits 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.app import app
from cli.context import load_settings
from cli.online_support import JsonOption, emit_json, experiment_admin, rate, refused, usage_error

if TYPE_CHECKING:
    from core.experiments import Experiment, Variant

experiment_app = typer.Typer(
    help="A/B experiments: split traffic between model versions, compare, promote the winner.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")
console = Console(soft_wrap=True)
_VERSION = re.compile(r"^v?([0-9]{1,18})$")


class Surface(StrEnum):
    recommendations = "recommendations"
    similar = "similar"


class Metric(StrEnum):
    ctr = "ctr"
    add_to_cart_rate = "add_to_cart_rate"
    conversion_rate = "conversion_rate"


MetricOption = typer.Option(Metric.ctr, "--metric", help="The metric the winner is decided on.")


def parse_variant(spec: str, overrides: dict[str, dict[str, float | int | bool | str]]) -> Variant:
    """``name:share[:version]`` (version: a model version; none = the champion)."""
    from pydantic import ValidationError

    from core.experiments import Variant

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        usage_error(f"--variant {spec!r} must be NAME:SHARE or NAME:SHARE:VERSION, e.g. treatment:0.5:7")
    try:
        share = float(parts[1])
    except ValueError:
        usage_error(f"--variant {spec!r}: the share {parts[1]!r} is not a number (e.g. 0.5)")
    version = None
    if len(parts) == 3:
        found = _VERSION.match(parts[2])
        if found is None:
            usage_error(f"--variant {spec!r}: the version {parts[2]!r} is not a model version number")
        version = found.group(1)
    try:
        return Variant(
            name=parts[0], share=share, model_version=version, overrides=overrides.get(parts[0], {})
        )
    except ValidationError as exc:
        usage_error(f"--variant {spec!r}: {_first_problem(exc)}")


def parse_overrides(specs: list[str]) -> dict[str, dict[str, float | int | bool | str]]:
    """``VARIANT:SETTING=VALUE`` options, per variant."""
    out: dict[str, dict[str, float | int | bool | str]] = {}
    for spec in specs:
        found = re.match(r"^([^:=]+):([A-Za-z_][A-Za-z0-9_]*)=(.+)$", spec)
        if found is None:
            usage_error(
                f"--override {spec!r} must be VARIANT:SETTING=VALUE, e.g. treatment:session_weight=0.8"
            )
        try:
            value = float(found.group(3))
        except ValueError:
            usage_error(f"--override {spec!r}: {found.group(3)!r} is not a number")
        out.setdefault(found.group(1), {})[found.group(2)] = value
    return out


def _first_problem(exc: Any) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        message = "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return f"{where}: {message}" if where else message


@contextmanager
def _admin() -> Iterator[Any]:
    """The admin, with its refusals printed as one line: wrong input exits 2, a conflict 1."""
    from storage.experiment_admin import ExperimentConflict, ExperimentInvalid, ExperimentNotFound

    with experiment_admin(load_settings()) as ops:
        try:
            yield ops
        except (ExperimentInvalid, ExperimentNotFound) as exc:
            usage_error(exc.message)
        except ExperimentConflict as exc:
            if exc.report is not None:
                console.print(report_table(exc.report))
            refused(exc.message)


def _variants(experiment: Experiment) -> str:
    return ", ".join(
        f"{v.name}:{v.share:g}:{'v' + v.model_version if v.model_version else 'champion'}"
        + (f" {v.overrides}" if v.overrides else "")
        for v in experiment.variants
    )


@experiment_app.command("create")
def create(
    experiment_id: str = typer.Argument(..., help="A new id: letters, digits, '.', '_', '-' (never reused)."),
    variant: list[str] = typer.Option(
        ...,
        "--variant",
        help="NAME:SHARE[:VERSION], once per variant; shares add up to 1; no VERSION = champion.",
    ),
    surface: list[Surface] = typer.Option(
        [Surface.recommendations], "--surface", help="A surface to split (repeat for both)."
    ),
    control: str | None = typer.Option(
        None, "--control", help="The variant compared with (default: the first)."
    ),
    override: list[str] = typer.Option(
        [],
        "--override",
        help="VARIANT:SETTING=VALUE, a serving setting the variant changes (session_weight).",
    ),
    description: str = typer.Option("", "--description", help="What the experiment tests."),
) -> None:
    """Start an A/B experiment; serving splits traffic within serving.experiments.poll_s."""
    from pydantic import ValidationError

    from core.experiments import Experiment

    overrides = parse_overrides(override)
    variants = [parse_variant(spec, overrides) for spec in variant]
    unknown = sorted(set(overrides) - {v.name for v in variants})
    if unknown:
        usage_error(f"--override names variants that do not exist: {', '.join(unknown)}")
    try:
        experiment = Experiment(
            experiment_id=experiment_id,
            variants=variants,
            control=control,
            surfaces=[s.value for s in dict.fromkeys(surface)],
            description=description,
        )
    except ValidationError as exc:
        usage_error(_first_problem(exc))
    with _admin() as ops:
        created = ops.create(experiment)
    console.print(
        f"[green]experiment {created.experiment_id} is running[/] on {', '.join(created.surfaces)}: "
        f"{_variants(created)}",
        highlight=False,
    )


@experiment_app.command("list")
def list_command() -> None:
    """Every experiment, newest first."""
    with _admin() as ops:
        found = ops.list()
    if not found:
        console.print("no experiments yet; start one with `streamrec experiment create`")
        return
    table = Table(title="experiments")
    for column in ("id", "status", "surfaces", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("variants (name:share:version)", overflow="fold")
    table.add_column("winner", no_wrap=True)
    for e in found:
        table.add_row(
            e.experiment_id,
            e.status,
            ",".join(e.surfaces),
            e.created_at.strftime("%Y-%m-%d %H:%M") if e.created_at else "-",
            _variants(e),
            "-" if e.winner is None else f"{e.winner} (v{e.promoted_version})",
        )
    console.print(table)


def report_table(report: dict[str, Any]) -> Table:
    metric = report["metric"]
    window = f"{report['since'][:16]} to {report['until'][:16]} UTC"
    table = Table(title=f"experiment {report['experiment_id']}: {metric}, {window}")
    table.add_column("variant", overflow="fold")
    for column in ("version", "share", "users", "impressions"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column(f"{metric} [95% CI]", justify="right", no_wrap=True)
    table.add_column("vs control [95% CI]", justify="right", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    for v in report["variants"]:
        versus = (v["vs_control"] or {}).get(metric)
        if v["control"]:
            diff, p = "control", ""
        elif versus is None:
            diff, p = "-", "-"
        else:
            low, high = versus["ci95"]
            mark = " *" if versus["significant"] else ""
            diff = f"{100 * versus['diff']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{mark}"
            p = f"{versus['p_value']:.2g}"
        table.add_row(
            v["name"],
            "champion" if v["model_version"] is None else f"v{v['model_version']}",
            f"{v['share']:g}",
            str(v["users"]),
            str(v["impressions"]),
            rate(v[metric], v[f"{metric}_ci95"]),
            diff,
            p,
        )
    srm = report["srm_p_value"]
    table.caption = (
        "differences in percentage points; * significant. "
        + ("sample ratio: no users yet. " if srm is None else f"sample ratio p={srm:.2g}. ")
        + report["verdict"]
    )
    return table


@experiment_app.command("show")
def show(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    metric: Metric = MetricOption,
    json_path: Path | None = JsonOption,
) -> None:
    """One experiment's report: each variant's metrics, the difference to control, the split's health."""
    with _admin() as ops:
        experiment, report = ops.report(experiment_id, metric.value)
    data = {"experiment": experiment.model_dump(mode="json"), "report": report.to_dict()}
    if emit_json(json_path, data):
        return
    console.print(
        f"{experiment.experiment_id}: {experiment.status}; {_variants(experiment)}", highlight=False
    )
    console.print(report_table(data["report"]))


@experiment_app.command("stop")
def stop(experiment_id: str = typer.Argument(..., help="The experiment's id.")) -> None:
    """Stop splitting traffic; the report stays available."""
    with _admin() as ops:
        stopped = ops.stop(experiment_id)
    console.print(f"experiment {stopped.experiment_id} is {stopped.status}", highlight=False)


@experiment_app.command("promote")
def promote(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    variant: str | None = typer.Option(
        None, "--variant", help="The variant to promote (default: the winner)."
    ),
    force: bool = typer.Option(False, "--force", help="Promote even without a significant win (recorded)."),
    metric: Metric = MetricOption,
) -> None:
    """Make the winning variant's model version champion, recording the online evidence with it."""
    with _admin() as ops:
        promotion = ops.promote(experiment_id, variant, force=force, metric=metric.value, decided_by="cli")
    forced = (
        " (forced)" if promotion.experiment.evidence and promotion.experiment.evidence.get("forced") else ""
    )
    console.print(
        f"[green]model v{promotion.record.version} is now the champion[/]{forced}: variant "
        f"{promotion.experiment.winner} of {experiment_id}; the report is kept on the model record "
        f"(`streamrec model show {promotion.record.version}`)",
        highlight=False,
    )
