"""`streamrec devstack up|down|status`: local Kafka-API (Tansu), MongoDB-wire (SecantusDB) and Redis servers.

The process logic lives in tooling/devstack/servers.py and tooling/devstack/probes.py, which the test
harness shares.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cli.context import load_settings
from core.errors import ConfigError, DependencyUnavailable, StreamrecError
from tooling.app import devstack_app
from tooling.devstack.probes import probe_url
from tooling.devstack.servers import (
    SERVER_NAMES,
    StackState,
    check_tools,
    is_ours,
    is_running,
    load_state,
    probe,
    save_state,
    server_url,
    start_server,
    start_stack,
    stop_server,
    stop_stack,
    wait_until_answers,
    wipe_data,
)
from tooling.settings import DevstackSettings, ToolingSettings

_LABELS = {"kafka": "Kafka API (Tansu)", "mongo": "MongoDB wire (SecantusDB)", "redis": "Redis"}
# What a server takes with it when it dies (Tansu and redis-server run without persistence here).
LOSSES = {
    "kafka": "the dev broker keeps everything in memory, so its topics, unconsumed events and committed "
    "offsets were lost, and its offsets start at 0 again while Redis and the events in MongoDB carry the "
    "old ones (new events would be stored without their Redis effects); stop the consumers, run "
    "`streamrec devstack down --wipe && streamrec devstack up` (this deletes MongoDB's data too) and "
    "send the events again",
    "mongo": "its data is on disk (data/mongo) and was kept; a write in flight when it died may need a retry",
    "redis": "realtime state (recent events, popularity, cached results) is empty; a running consumer "
    "rebuilds it from MongoDB on its own (or run `streamrec rebuild-cache`)",
}


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


@devstack_app.command("up")
def up(
    timeout: float = typer.Option(60.0, min=1.0, help="Seconds to wait for each server to answer."),
) -> None:
    """Start the three servers (idempotent): only a server that died is started again, and what it lost
    is said. Writes .devstack/stack.env for every other command."""
    settings = load_settings(ToolingSettings)
    base = settings.devstack.dir.resolve()
    wanted = _ports(settings.devstack)
    console = Console(soft_wrap=True)
    state = load_state(base)
    if state is not None:
        running = {name: server.port for name, server in state.servers.items() if is_ours(server)}
        if any(wanted[name] != port for name, port in running.items()):
            raise ConfigError(
                f"the dev stack in {base} already runs on other ports {running}; "
                "run `streamrec devstack down` first to change them"
            )
    if state is None:
        with console.status("starting Tansu, SecantusDB and redis-server ..."):
            state = start_stack(base, wanted["kafka"], wanted["mongo"], wanted["redis"], timeout_s=timeout)
        console.print(_table(state, dict.fromkeys(state.servers, True)))
        console.print(f"wrote {base / 'stack.env'}")
    else:
        restarted = _repair(state, wanted, timeout, console)
        if not restarted:
            console.print(f"dev stack already up in {base}; nothing to do")
        console.print(_table(state, dict.fromkeys(state.servers, True)))
        for name in restarted:
            console.print(f"{name} restarted: {LOSSES[name]}", highlight=False)
    if base != Path(".devstack").resolve():
        # Settings only reads ./.devstack/stack.env by itself.
        console.print(f"export its variables for other commands: set -a; . {base / 'stack.env'}; set +a")


def _repair(state: StackState, wanted: dict[str, int], timeout: float, console: Console) -> list[str]:
    """Start only the servers of ``state`` that are gone (or never answer); the others keep their pid
    and data. Returns the names started again after dying."""
    lost = []
    for name in SERVER_NAMES:
        server = state.servers.get(name)
        if server is not None and is_ours(server):
            try:
                wait_until_answers(server, timeout)
                continue
            except DependencyUnavailable as exc:
                console.print(f"{name} (pid {server.pid}) runs but does not answer ({exc}); restarting it")
                if not stop_server(server):
                    raise StreamrecError(
                        f"could not stop {name} (pid {server.pid}); stop it by hand, then run up again"
                    ) from exc
        check_tools([name])
        with console.status(f"starting {name} ..."):
            fresh = start_server(name, state.base_dir, wanted[name], timeout)
        if server is not None:
            fresh.restarted_at = time.time()
            lost.append(name)
        state.servers[name] = fresh
        # Saved after each one: stack.env follows the servers that actually run.
        save_state(state)
    return lost


@devstack_app.command("down")
def down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete the servers' data and logs."),
) -> None:
    """Stop the servers `devstack up` started (only those); keep their data unless --wipe."""
    settings = load_settings(ToolingSettings)
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
    settings = load_settings(ToolingSettings)
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
    console = Console(soft_wrap=True)
    console.print(table)
    all_up = all(answers.values())
    if state is not None:
        for line in _status_notes(state, answers):
            console.print(line, highlight=False)
    raise typer.Exit(0 if all_up else 1)


def _status_notes(state: StackState, answers: dict[str, bool]) -> list[str]:
    """One line per server that is down or was restarted, saying what it lost."""
    notes = []
    for name in SERVER_NAMES:
        server = state.servers.get(name)
        if server is None or not is_running(server.pid) or not is_ours(server):
            notes.append(
                f"{name} is down: run `streamrec devstack up` to start only it again; once restarted, "
                f"{LOSSES[name]}"
            )
        elif not answers.get(name, False):
            notes.append(f"{name} (pid {server.pid}) runs but does not answer; see {server.log_path}")
        elif server.restarted_at is not None:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(server.restarted_at))
            notes.append(f"{name} was restarted at {at}: {LOSSES[name]}")
    return notes
