"""The typer applications every command module registers on (tooling adds its own groups: tooling.app).

Command modules import heavy libraries (torch, faiss, FastAPI) inside their functions so that
`streamrec --help` and `streamrec devstack status` start instantly.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="streamrec",
    help="Self-hosted, Kafka-driven streaming recommender.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="Inspect and manage published model versions.", no_args_is_help=True)
dead_letter_app = typer.Typer(
    help="Inspect the dead-letter topic and replay records after a fix.", no_args_is_help=True
)
app.add_typer(model_app, name="model")
app.add_typer(dead_letter_app, name="dead-letter")
