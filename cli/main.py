"""Console entry point `streamrec`: registers every command module, then runs typer."""

from __future__ import annotations

import importlib
import sys

from rich.console import Console

from cli.app import app
from core.errors import StreamrecError

# Each module registers its commands on cli.app when imported.
COMMAND_MODULES = (
    "cli.bench_chaos",
    "cli.bench_freshness",
    "cli.bench_ingest",
    "cli.bench_model",
    "cli.bench_serve",
    "cli.consume",
    "cli.dead_letter",
    "cli.demo",
    "cli.devstack",
    "cli.produce",
    "cli.replay",
    "cli.retrain_cmd",
    "cli.serve",
)


def main() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    try:
        app()
    except StreamrecError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
