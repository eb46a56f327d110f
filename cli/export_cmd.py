"""`streamrec export recommendations`: recommendation lists for many users, as JSON lines, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.app import app
from core.errors import ConfigError

export_app = typer.Typer(help="Batch exports (e-mail and push campaigns).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("recommendations")
def export_recommendations(
    out: Path = typer.Option(..., "--out", help="Output file, JSON lines; an existing one is resumed."),
    users: Path | None = typer.Option(
        None, "--users", help="File of user ids, one a line (blank lines and '#' comments skipped)."
    ),
    all_users: bool = typer.Option(
        False, "--all", help="Every user with at least one stored event (MongoDB), erased users left out."
    ),
    k: int = typer.Option(20, "--k", min=1, help="Items per user; at most STREAMREC_SERVING__MAX_K."),
    concurrency: int = typer.Option(16, min=1, max=1024, help="Users in flight at once."),
    model_wait: float = typer.Option(120.0, min=0.0, help="Seconds to wait for the model to load."),
) -> None:
    """Recommendations for a list of users (or all), computed by the API's own read side in this process.

    One line per user: {"user_id", "items": [{"item_id", "score", "reason"}...], "model_version",
    "request_id"} (plus "experiment_id" and "variant" when an A/B experiment answered). Users already in
    --out are skipped, and a cut-short last line (an interrupted run) is repaired first, so running the
    same command again finishes the job. Impressions are not logged and the results cache is not used.
    Users whose answer needed Redis while it was unreachable are not written; run again for them.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cli.context import configure_logging, load_settings, mongo_guard
    from cli.export_run import run_export
    from core.export_file import read_users

    if (users is None) == (not all_users):
        raise ConfigError("give exactly one of --users FILE and --all")
    settings = load_settings()
    if k > settings.serving.max_k:
        raise ConfigError(f"--k must be at most STREAMREC_SERVING__MAX_K={settings.serving.max_k}, got {k}")
    configure_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    user_list = read_users(users) if users is not None else None
    console = Console(stderr=True)
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("export", total=None, rate="")
        started: list[float] = []

        def on_total(n: int) -> None:
            import time

            started.append(time.monotonic())
            progress.update(task, total=n)

        def on_done(n: int) -> None:
            import time

            progress.advance(task, n)
            done = progress.tasks[0].completed
            elapsed = time.monotonic() - started[0] if started else 0.0
            if elapsed > 0:
                progress.update(task, rate=f"{done / elapsed:,.0f} users/s")

        with mongo_guard(settings):
            stats = asyncio.run(
                run_export(
                    settings,
                    out,
                    k=k,
                    users=user_list,
                    concurrency=concurrency,
                    model_wait_s=model_wait,
                    on_total=on_total,
                    on_done=on_done,
                )
            )
    if stats.repaired_bytes:
        console.print(f"repaired {out}: dropped a cut-short last line ({stats.repaired_bytes} bytes)")
    console.print(
        f"{stats.exported} users exported to {out} in {stats.seconds:.1f} s "
        f"({stats.users_per_s:,.0f} users/s, model {stats.model_version}); "
        f"{stats.already_done} of {stats.requested} were already there"
    )
    if stats.left_over:
        console.print(
            f"[yellow]{stats.left_over} users not exported: Redis was unreachable for them; "
            "run the same command again to export them[/]"
        )
        raise typer.Exit(2)
