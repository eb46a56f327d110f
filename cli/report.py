"""`streamrec report online|shadow`: online metrics of what was shown, read from MongoDB.

Metric definitions: README, *Measuring online*, and ``core.online_report``. The same reports are
served by ``GET /v1/admin/online`` and ``GET /v1/admin/shadow``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cli.app import app
from cli.context import load_settings
from cli.online_support import JsonOption, SinceOption, emit_json, experiment_admin, now_utc, rate, since_time

report_app = typer.Typer(
    help="Online metrics: impressions, click-through and conversion rates.", no_args_is_help=True
)
app.add_typer(report_app, name="report")


class GroupBy(StrEnum):
    model_version = "model_version"
    variant = "variant"
    surface = "surface"
    position = "position"


def _group(row: dict[str, Any], by: str) -> str:
    value = row["group"]
    if by == "variant":
        return "-" if row["experiment_id"] is None else f"{row['experiment_id']}/{value}"
    if value is None:
        return "-" if by != "model_version" else "none (popularity)"
    return str(value)


def online_table(report: dict[str, Any]) -> Table:
    by = report["by"]
    table = Table(title=f"online metrics by {by}, {report['since'][:16]} to {report['until'][:16]} UTC")
    table.add_column(by, overflow="fold")
    for column in ("impressions", "users", "clicks", "carts", "buys"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("CTR [95% CI]", "add-to-cart [95% CI]", "conversion [95% CI]"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in report["rows"]:
        table.add_row(
            _group(row, by),
            str(row["impressions"]),
            str(row["users"]),
            str(row["clicks"]),
            str(row["add_to_carts"]),
            str(row["purchases"]),
            rate(row["ctr"], row["ctr_ci95"]),
            rate(row["add_to_cart_rate"], row["add_to_cart_rate_ci95"]),
            rate(row["conversion_rate"], row["conversion_rate_ci95"]),
        )
    return table


@report_app.command("online")
def online(
    since: str = SinceOption,
    by: GroupBy = typer.Option(GroupBy.model_version, "--by", help="Group the impressions by this."),
    json_path: Path | None = JsonOption,
) -> None:
    """Impressions, CTR, add-to-cart and conversion rate per impression, with 95% intervals."""
    from storage.online_reads import read_online_report

    settings = load_settings()
    now = now_utc()
    start = since_time(since, settings, now)
    with experiment_admin(settings) as ops:
        report = read_online_report(
            ops.impressions, ops.events, since=start, by=by.value, until=now
        ).to_dict()
    if emit_json(json_path, report):
        return
    console = Console(soft_wrap=True)
    if not report["rows"]:
        console.print(
            f"no impressions since {report['since'][:16]} UTC: is impression logging on "
            "(STREAMREC_SERVING__IMPRESSIONS__ENABLED) and is a consumer storing them?"
        )
        return
    console.print(online_table(report))
    console.print(
        f"{report['attributed_events']} attributed events; {report['unmatched_events']} of them belong to "
        "lists shown before --since (not counted)",
        highlight=False,
    )


@report_app.command("shadow")
def shadow(since: str = SinceOption, json_path: Path | None = JsonOption) -> None:
    """Shadow model vs live: was the shopper's next click or purchase in each list?"""
    from storage.online_reads import read_shadow_report

    settings = load_settings()
    now = now_utc()
    start = since_time(since, settings, now)
    with experiment_admin(settings) as ops:
        report = read_shadow_report(
            ops.impressions,
            ops.events,
            since=start,
            window_s=settings.consumer.attribution.window_s,
            until=now,
        ).to_dict()
    if emit_json(json_path, report):
        return
    console = Console(soft_wrap=True)
    if not report["pairs"]:
        console.print(
            f"{report['shadow_impressions']} shadow lists since {report['since'][:16]} UTC and no shopper's "
            "next click or purchase to judge them on yet (set STREAMREC_SERVING__EXPERIMENTS__SHADOW_VERSION)"
        )
        return
    table = Table(title=f"shadow v{','.join(report['shadow_versions'])} vs live, {report['pairs']} shoppers")
    table.add_column("list")
    table.add_column("next choice in it [95% CI]", justify="right")
    table.add_row("shadow", rate(report["shadow_hit_rate"], report["shadow_hit_rate_ci95"]))
    table.add_row("live", rate(report["live_hit_rate"], report["live_hit_rate_ci95"]))
    console.print(table)
    diff = report["difference"]
    console.print(
        f"shadow minus live: {100 * diff['diff']:+.2f} points "
        f"[{100 * diff['ci95'][0]:+.2f}, {100 * diff['ci95'][1]:+.2f}], McNemar p={diff['p_value']:.2g}; "
        f"{report['missing_live']} shadow lists had no stored live list",
        highlight=False,
    )
