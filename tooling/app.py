"""The tooling's command groups, added to the `streamrec` typer app when tooling is installed."""

from __future__ import annotations

import typer

from cli.app import app

bench_app = typer.Typer(help="Benchmarks that write the JSON BENCHMARKS.md quotes.", no_args_is_help=True)
devstack_app = typer.Typer(help="Local Kafka-API, MongoDB-wire and Redis servers for development.")
app.add_typer(bench_app, name="bench")
app.add_typer(devstack_app, name="devstack")
