"""Everything a production deployment does not run: benchmarks, the dev stack, producers and replay,
the demo, offline data-set readers and the CLI docs generator.

It may import the product packages and ``cli``; none of them imports it, except ``cli.main``, which
registers the modules below as `streamrec` subcommands when this package is installed.
"""

# Each module registers its commands on cli.app (or on the groups in tooling.app) when imported.
COMMAND_MODULES = (
    "tooling.bench.chaos",
    "tooling.bench.cold_start",
    "tooling.bench.export",
    "tooling.bench.freshness",
    "tooling.bench.ingest",
    "tooling.bench.model",
    "tooling.bench.online",
    "tooling.bench.serve",
    "tooling.demo.command",
    "tooling.devstack.commands",
    "tooling.producers.produce",
    "tooling.producers.replay",
)
