"""The tooling's command groups, added to the `streamrec` typer app when tooling is installed."""

from __future__ import annotations

import typer

from cli.app import app

bench_app = typer.Typer(help="Benchmarks that write the JSON BENCHMARKS.md quotes.", no_args_is_help=True)
devstack_app = typer.Typer(help="Local Kafka-API, MongoDB-wire and Redis servers for development.")
app.add_typer(bench_app, name="bench")
app.add_typer(devstack_app, name="devstack")


@bench_app.callback()
def _bench_starts() -> None:
    # Every bench's JSON names the commit it measured: the tree as the command starts (a long run
    # would otherwise record whatever was committed by the time it wrote its report).
    from tooling.bench.common import remember_start_revision

    remember_start_revision()
