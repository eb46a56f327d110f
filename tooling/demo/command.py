"""`streamrec demo`: the whole product on the dev stack, step by step, with what each step shows.

1. the dev stack (started here if it is not running, and then stopped at the end),
2. `streamrec consume` and `streamrec serve` as child processes,
3. a real data set (or the simulator) streamed through Kafka, until MongoDB holds every event,
4. a model trained, gated and published (the retrain role, in-process), then streamrec, popularity and
   the best cheap baseline judged on the stored events with `bench quality`'s protocol (a table with
   paired bootstrap intervals, and a plot of NDCG@K and Recall@K),
5. recommendations with reasons for three users over HTTP, then a few clicks for one of them through
   `POST /v1/events` and how their list changed,
6. a merchandising rule (a pin) in action, and a brand-new catalog item answered by `/similar` through
   its catalog content seconds after its update (``tooling.demo.features``),
7. the URLs to explore, running until Ctrl-C (or exiting at once with --exit).

The demo uses the configured topics, database and key prefix so the API can be explored afterwards;
deterministic event ids make it re-runnable (a second run stores nothing new and still works).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.app import app
from core.errors import DependencyUnavailable, StreamrecError
from tooling.demo.data import DemoData, choose_dataset, event_cap, load_demo_data, simulated_period_end
from tooling.demo.features import show_features
from tooling.demo.pipeline import DemoError, judge, stream, train, wait_stored
from tooling.demo.report import (
    changed,
    choose_clicks,
    click_events,
    item_ids,
    most_active_users,
    reason_text,
)

if TYPE_CHECKING:
    import httpx

    from tooling.devstack.processes import ManagedProcess
    from tooling.settings import ToolingSettings

log = logging.getLogger(__name__)
console = Console()
SHOW_K = 5
CLICKS = 3
# A user's recommendations must reflect clicks within this time (they take Kafka -> consumer -> Redis).
CLICK_EFFECT_TIMEOUT_S = 20.0
MODEL_LOAD_TIMEOUT_S = 90.0
STEPS = 7


_current_step = ["start"]


def _step(n: int, title: str) -> None:
    _current_step[0] = f"step {n}/{STEPS} ({title})"
    console.rule(f"[bold]{n}/{STEPS} {title}")


def _port_busy(host: str, port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _demo_settings(settings: ToolingSettings, exit_after: bool) -> ToolingSettings:
    """Children pick a new model up within a second; --exit caps the fine-tuning epochs to stay fast in CI.

    The factors stay as configured: the closed-form fit costs about the same at any rank on the demo's
    data (the decomposition is of the users' Gram matrix), and the quality table should show the model
    as configured."""
    from tooling.devstack.processes import free_port

    # The API this demo starts serves the demo page (off by default in every other deployment).
    serving = settings.serving.model_copy(update={"model_poll_s": 1.0, "demo_page": True})
    model = settings.model
    if exit_after:
        model = model.model_copy(update={"epochs": min(model.epochs, 5)})
    consumer = settings.consumer
    if consumer.metrics_port and _port_busy("127.0.0.1", consumer.metrics_port):
        # Another consumer of this stack already serves metrics there; ours shares its group's work.
        consumer = consumer.model_copy(update={"metrics_port": free_port()})
    if not serving.api_keys_ingest and not serving.api_keys_admin:
        # POST /v1/events always needs a key; a one-off key for the API this demo starts (printed at the end).
        serving = serving.model_copy(
            update={"api_keys_ingest": [SecretStr(f"demo-{secrets.token_urlsafe(18)}")]}
        )
    if not serving.api_keys_admin:
        # The merchandising step writes a rule through the admin API (a one-off key, like the ingest one).
        serving = serving.model_copy(
            update={"api_keys_admin": [SecretStr(f"demo-admin-{secrets.token_urlsafe(18)}")]}
        )
    return settings.model_copy(update={"serving": serving, "model": model, "consumer": consumer})


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _headers(keys: list[Any]) -> dict[str, str]:
    return {"X-API-Key": keys[0].get_secret_value()} if keys else {}


# ---------------------------------------------------------------------------------------------- steps


def _wait_model(http: httpx.Client, version: int, server: ManagedProcess) -> None:
    import httpx

    start = time.monotonic()
    last = ""
    while time.monotonic() - start < MODEL_LOAD_TIMEOUT_S:
        if not server.alive():
            raise DemoError(f"the API exited with code {server.popen.returncode}; see {server.log_path}")
        try:
            resp = http.get("/v1/model")
            if resp.status_code == 200 and resp.json().get("version") == str(version):
                console.print(f"[green]serving[/] model v{version}")
                return
            last = resp.json().get("error", {}).get("message", "") if resp.status_code != 200 else ""
            if f"version {version} refused" in last:
                raise DemoError(f"the API refused model v{version}: {last}; see {server.log_path}")
        except (httpx.HTTPError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise DemoError(
        f"the API did not load model v{version} within {MODEL_LOAD_TIMEOUT_S:.0f}s ({last or 'no answer'}); "
        f"see {server.log_path}"
    )


def _recs(http: httpx.Client, user: str) -> dict[str, Any]:
    resp = http.get(f"/v1/users/{user}/recommendations", params={"k": SHOW_K})
    if resp.status_code != 200:
        raise DemoError(f"GET recommendations for {user} answered {resp.status_code}: {resp.text[:200]}")
    return dict(resp.json())


def _print_recs(user: str, body: dict[str, Any], titles: dict[str, str], new: set[str] | None = None) -> None:
    table = Table(title=f"user {escape(user)}  (model v{body.get('model_version')})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("reason")
    for rank, entry in enumerate(body.get("items", []), start=1):
        item = str(entry["item_id"])
        label = f"{escape(titles[item])} [dim]· id {escape(item)}[/]" if item in titles else escape(item)
        if new is not None and item in new:
            label = f"[bold green]+ {label}[/]"
        table.add_row(str(rank), label, escape(reason_text(entry.get("reason", {}), titles)))
    console.print(table)


def _click_and_compare(
    http: httpx.Client, data: DemoData, user: str, others: list[list[str]], ingest: dict[str, str]
) -> None:
    titles = data.titles()
    before = _recs(http, user)
    history = {e.item_id for e in data.events if e.user_id == user}
    candidates = [item for lst in others for item in lst]
    popular = http.get("/v1/popular", params={"k": 50}).json().get("items", [])
    candidates += [str(p["item_id"]) for p in popular]
    clicks = choose_clicks(user, item_ids(before), candidates, history, CLICKS)
    if not clicks:
        raise DemoError(f"found no item for {user} to click; stream more events (--events)")
    events = click_events(user, clicks, [f"demo-{uuid.uuid4().hex}" for _ in clicks], int(time.time() * 1000))
    resp = http.post("/v1/events", json=events, headers=ingest)
    if resp.status_code == 401 or resp.status_code == 403:
        raise DemoError("POST /v1/events needs an ingest key: set STREAMREC_SERVING__API_KEYS_INGEST")
    if resp.status_code != 202 or resp.json().get("accepted") != len(events):
        raise DemoError(f"POST /v1/events answered {resp.status_code}: {resp.text[:200]}")
    shown = escape(", ".join(titles.get(i, i) for i in clicks))
    console.print(f"{user} clicked {shown} (POST /v1/events → Kafka → consumer → Redis)", highlight=False)
    start = time.monotonic()
    while time.monotonic() - start < CLICK_EFFECT_TIMEOUT_S:
        after = _recs(http, user)
        if changed(item_ids(before), item_ids(after)):
            took = time.monotonic() - start
            console.print(f"[green]recommendations changed[/] {took:.1f}s after the clicks:")
            _print_recs(user, after, titles, new=set(item_ids(after)) - set(item_ids(before)))
            return
        time.sleep(0.2)
    raise DemoError(
        f"{user}'s recommendations did not change within {CLICK_EFFECT_TIMEOUT_S:.0f}s of "
        f"{len(clicks)} clicks; "
        "is the consumer running (see its log)?"
    )


# ---------------------------------------------------------------------------------------------- command


@contextlib.contextmanager
def _owned(proc: ManagedProcess | None) -> Iterator[None]:
    try:
        yield
    finally:
        if proc is not None and proc.alive():
            code = proc.stop()
            log.info("event=child_stopped name=%s code=%s", proc.name, code)


@app.command("demo")
def demo_command(
    exit_after: bool = typer.Option(
        False, "--exit", help="Run every step once, stop what the demo started and exit (a smoke test)."
    ),
    path: Path | None = typer.Option(
        None,
        "--path",
        help="Data file to stream (MovieLens ratings.csv / u.data; Taobao with --dataset taobao).",
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="movielens, taobao or simulate "
        "(default: MovieLens if --path or ../shared/data has it, else simulate).",
    ),
    events: int | None = typer.Option(
        None,
        "--events",
        min=1,
        help="Stream at most N events (default: the whole data set, at most 120,000 with --exit; "
        "50,000 simulated).",
    ),
) -> None:
    """Run the whole product on the dev stack: stream, store, train, recommend, click, explore."""
    from cli.context import configure_logging, load_settings
    from tooling.devstack.processes import ensure_devstack
    from tooling.settings import ToolingSettings

    settings = load_settings(ToolingSettings)
    configure_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    name = choose_dataset(dataset, path)
    cap = event_cap(events, exit_after, name)

    _step(1, "dev stack")
    stack = ensure_devstack(settings)
    console.print(
        "started the dev stack (stopped again when the demo ends)"
        if stack.started
        else "using the running servers"
    )
    try:
        _run(_demo_settings(stack.settings, exit_after), name, path, cap, exit_after)
    except (StreamrecError, KeyboardInterrupt):
        raise
    except Exception as exc:
        # A bug, not a user error: one line here, the traceback in the log for whoever fixes it.
        log.debug("event=demo_failed step=%s", _current_step[0], exc_info=True)
        raise DemoError(
            f"{_current_step[0]} failed: {type(exc).__name__}: {exc} "
            "(STREAMREC_LOG_LEVEL=DEBUG shows the traceback)"
        ) from exc
    finally:
        if stack.started:
            stack.stop()
            console.print("stopped the dev stack the demo started")


def _run(settings: ToolingSettings, name: str, path: Path | None, cap: int | None, exit_after: bool) -> None:
    import httpx

    from tooling.devstack.processes import REPO_ROOT, create_topics, start_consumer, start_server

    host, port = _client_host(settings.serving.host), settings.serving.port
    if _port_busy(host, port):
        raise DemoError(
            f"port {port} is already in use (another `streamrec serve`?): "
            "stop it or set STREAMREC_SERVING__PORT"
        )
    state_dir = (
        settings.devstack.dir if settings.devstack.dir.is_absolute() else REPO_ROOT / settings.devstack.dir
    )
    log_dir = state_dir / "logs"

    _step(2, "consumer and API")
    # Topics first: a consumer subscribed to a missing topic would only see it minutes later.
    create_topics(settings)
    consumer = start_consumer(settings, log_dir=log_dir, name="demo-consumer")
    with _owned(consumer):
        console.print(f"consumer running (pid {consumer.pid}, log {consumer.log_path})")
        server = start_server(settings, log_dir=log_dir, name="demo-serve", health_path="/healthz")
        with _owned(server):
            console.print(f"API running on http://{host}:{port} (pid {server.pid}, log {server.log_path})")

            _step(3, "stream events through Kafka")
            with console.status(f"reading {name} data"):
                data = load_demo_data(
                    name, path, cap, simulated_end=simulated_period_end(settings.devstack.dir)
                )
            console.print(data.description + (f", {data.rejected:,} rows rejected" if data.rejected else ""))
            stream(settings, data, console)
            wait_stored(settings, data, consumer, console)

            _step(4, "train, gate, publish and judge a model")
            version, table = train(settings, console)
            judge(settings, table, console, state_dir / "demo-quality.png", data.name)

            base = f"http://{host}:{port}"
            with httpx.Client(
                base_url=base, timeout=10.0, headers=_headers(settings.serving.api_keys_read)
            ) as http:
                _wait_model(http, version, server)

                _step(5, "recommendations with reasons")
                titles = data.titles()
                users = most_active_users(data.events, 3)
                lists: list[list[str]] = []
                for user in users:
                    body = _recs(http, user)
                    lists.append(item_ids(body))
                    _print_recs(user, body, titles)
                ingest_keys = settings.serving.api_keys_ingest or settings.serving.api_keys_admin
                _click_and_compare(http, data, users[0], lists[1:], _headers(ingest_keys))

                _step(6, "merchandising and a new item")
                show_features(
                    console,
                    settings,
                    http,
                    _headers(settings.serving.api_keys_admin),
                    users[0],
                    titles,
                    {u.item_id: u.category for u in data.items if u.category},
                    lambda u: _recs(http, u),
                    _print_recs,
                    keep_rule=not exit_after,
                    # Their history and every item the click step may have clicked.
                    avoid={e.item_id for e in data.events if e.user_id == users[0]}
                    | {i for lst in lists for i in lst},
                )

            _step(7, "explore")
            console.print(f"API docs      {base}/docs")
            ingest = (settings.serving.api_keys_ingest or settings.serving.api_keys_admin)[
                0
            ].get_secret_value()
            # The key rides in the URL fragment, which the browser never sends: the page reads it locally.
            console.print(f"demo page     {base}/demo#key={ingest}")
            console.print(
                f"metrics       {base}/metrics  (consumer: http://127.0.0.1:{settings.consumer.metrics_port}/metrics)"
            )
            if exit_after:
                console.print("[green]demo complete[/] (--exit: stopping what the demo started)")
                return
            console.print("[bold]running; press Ctrl-C to stop[/]")
            _wait_for_interrupt(consumer, server)


def _wait_for_interrupt(*children: ManagedProcess) -> None:
    try:
        while True:
            for child in children:
                if not child.alive():
                    raise DependencyUnavailable(
                        f"{child.name} exited with code {child.popen.returncode}; see {child.log_path}"
                    )
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("\nstopping the consumer and the API…")
