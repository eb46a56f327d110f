"""`streamrec devstack up|down|status`: local Kafka-API (Tansu), MongoDB-wire (SecantusDB) and Redis servers.

The process logic lives in cli/devstack_servers.py and cli/devstack_probes.py, which the test harness shares.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cli.app import devstack_app
from cli.context import load_settings
from cli.devstack_probes import probe_url
from cli.devstack_servers import (
    SERVER_NAMES,
    StackState,
    is_ours,
    is_running,
    load_state,
    probe,
    remove_state,
    server_url,
    start_stack,
    stop_stack,
    wipe_data,
)
from core.errors import ConfigError, StreamrecError
from core.settings import DevstackSettings

_LABELS = {"kafka": "Kafka API (Tansu)", "mongo": "MongoDB wire (SecantusDB)", "redis": "Redis"}


def _ports(ds: DevstackSettings) -> dict[str, int]:
    return {"kafka": ds.kafka_port, "mongo": ds.mongo_port, "redis": ds.redis_port}


def _table(state: StackState, answers: dict[str, bool]) -> Table:
    table = Table(title=f"dev stack ({state.base_dir})")
    for column in ("server", "url", "pid", "answers"):
        table.add_column(column)
    for name in SERVER_NAMES:
        server = state.servers.get(name)
        if server is None:
            continue
        pid = str(server.pid) if is_ours(server) else f"{server.pid} (gone)"
        ok = answers.get(name, False)
        table.add_row(_LABELS[name], server.url, pid, "[green]yes[/]" if ok else "[red]no[/]")
    return table


def _healthy(state: StackState) -> bool:
    if set(state.servers) != set(SERVER_NAMES):
        return False
    if not all(is_ours(server) for server in state.servers.values()):
        return False
    return all(probe(state).values())


@devstack_app.command("up")
def up(
    timeout: float = typer.Option(60.0, min=1.0, help="Seconds to wait for each server to answer."),
) -> None:
    """Start the three servers (idempotent) and write .devstack/stack.env for every other command."""
    settings = load_settings()
    base = settings.devstack.dir.resolve()
    wanted = _ports(settings.devstack)
    console = Console(soft_wrap=True)
    state = load_state(base)
    if state is not None:
        if _healthy(state):
            running = {name: server.port for name, server in state.servers.items()}
            if running != wanted:
                raise ConfigError(
                    f"the dev stack in {base} already runs on other ports {running}; "
                    "run `streamrec devstack down` first to change them"
                )
            console.print(f"dev stack already up in {base}; nothing to do")
            console.print(_table(state, dict.fromkeys(state.servers, True)))
            return
        console.print(f"found a stale dev stack state in {base}: stopping what is left and restarting")
        stop_stack(state)
        remove_state(base)
    with console.status("starting Tansu, SecantusDB and redis-server ..."):
        state = start_stack(base, wanted["kafka"], wanted["mongo"], wanted["redis"], timeout_s=timeout)
    console.print(_table(state, dict.fromkeys(state.servers, True)))
    console.print(f"wrote {base / 'stack.env'}")
    if base != Path(".devstack").resolve():
        # Settings only reads ./.devstack/stack.env by itself.
        console.print(f"export its variables for other commands: set -a; . {base / 'stack.env'}; set +a")


@devstack_app.command("down")
def down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete the servers' data and logs."),
) -> None:
    """Stop the servers `devstack up` started (only those); keep their data unless --wipe."""
    settings = load_settings()
    base = settings.devstack.dir.resolve()
    console = Console(soft_wrap=True)
    state = load_state(base)
    if state is None:
        console.print(f"dev stack is not running (no state in {base})")
    else:
        gone = stop_stack(state)
        left = [f"{name} (pid {state.servers[name].pid})" for name, ok in gone.items() if not ok]
        if left:
            raise StreamrecError(f"could not stop {', '.join(left)}; stop it by hand, then run down again")
        console.print(f"stopped {', '.join(state.servers)}")
    if wipe:
        wipe_data(base)
        console.print(f"wiped data and logs in {base}")


@devstack_app.command("status")
def status() -> None:
    """Show each server, its URL, pid and whether it answers. Exit code 0 if all answer, 1 otherwise."""
    settings = load_settings()
    base = settings.devstack.dir.resolve()
    state = load_state(base)
    if state is None:
        # Nothing started by us: still report whether something answers on the configured ports.
        table = Table(title=f"dev stack ({base}): not started by `devstack up`")
        for column in ("server", "url", "pid", "answers"):
            table.add_column(column)
        answers = {}
        for name, port in _ports(settings.devstack).items():
            url = server_url(name, port)
            answers[name] = probe_url(name, url)
            table.add_row(_LABELS[name], url, "-", "[green]yes[/]" if answers[name] else "[red]no[/]")
    else:
        answers = probe(state)
        answers.update({name: False for name in SERVER_NAMES if name not in state.servers})
        table = _table(state, answers)
    Console().print(table)
    all_up = all(answers.values())
    if state is not None and not all(is_running(s.pid) for s in state.servers.values()):
        Console().print("some servers exited: run `streamrec devstack up` to restart them")
    raise typer.Exit(0 if all_up else 1)
