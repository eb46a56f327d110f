"""Console entry point `streamrec`: registers every command module, then runs typer."""

from __future__ import annotations

import importlib
import importlib.util
import sys

from rich.console import Console
from rich.markup import escape

from cli.app import app
from core.errors import StreamrecError

# The product's commands. Each module registers its commands on cli.app when imported.
COMMAND_MODULES = (
    "cli.consume",
    "cli.dead_letter",
    "cli.experiment",
    "cli.export_cmd",
    "cli.report",
    "cli.retrain_cmd",
    "cli.rules_cmd",
    "cli.serve",
)
# The tooling (benchmarks, dev stack, demo, producers) is a separate package that the production image
# leaves out; its commands are registered only where it is installed.
TOOLING_PACKAGE = "tooling"


def command_modules() -> tuple[str, ...]:
    """Every command module to register: the product's, plus the tooling's when it is installed.

    find_spec asks only whether the package exists; an ImportError raised inside an installed tooling
    package is a bug and propagates."""
    if importlib.util.find_spec(TOOLING_PACKAGE) is None:
        return COMMAND_MODULES
    tooling = importlib.import_module(TOOLING_PACKAGE)
    return (*COMMAND_MODULES, *tooling.COMMAND_MODULES)


def register_commands() -> None:
    for name in command_modules():
        importlib.import_module(name)


def main() -> None:
    register_commands()
    try:
        app()
    except StreamrecError as exc:
        # Escaped: a message may quote brackets (`pip install 'streamrec[train]'`) that rich would
        # otherwise read as markup and drop.
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
