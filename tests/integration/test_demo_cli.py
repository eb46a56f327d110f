"""`streamrec demo --exit` end to end against the test's servers: stream, store, train, recommend, click."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

from core.settings import Settings
from tooling.devstack.processes import REPO_ROOT, child_env, free_port

DEMO_TIMEOUT_S = 240


def demo_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "serving": settings.serving.model_copy(update={"port": free_port()}),
            "consumer": settings.consumer.model_copy(update={"metrics_port": free_port()}),
        }
    )


def run_demo(settings: Settings, *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run the demo in its own process group; also says whether it left any process of that group behind."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--exit", *args],
        cwd=REPO_ROOT,
        env=child_env(settings, {"COLUMNS": "160"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    leftover = True
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            leftover = False
    finally:
        # A hung demo, or one that forgot its consumer and API, must not leave them running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), leftover


def test_demo_exit_runs_every_step_and_is_rerunnable(settings: Settings) -> None:
    settings = demo_settings(settings)
    first, leftover = run_demo(settings, "--dataset", "simulate", "--events", "3000")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    for line in (
        "using the running servers",
        "streamed 3,000 events",
        "stored MongoDB holds 3,000 events",
        "streamrec minus each baseline, paired bootstrap 95% interval over users",
        "best cheap baseline on validation",
        "popularity",
        "NDCG@10: streamrec is ",
        "recommendations changed",
        "its reason names the rule",
        "rule demo-pin (pin)",
        "after its catalog update",
        f"http://127.0.0.1:{settings.serving.port}/docs",
        f"http://127.0.0.1:{settings.serving.port}/demo",
        f"http://127.0.0.1:{settings.serving.port}/metrics",
        "demo complete",
    ):
        assert line in output, f"missing {line!r} in:\n{output[-4000:]}"
    assert "Traceback" not in output
    assert "promoted" in output
    # 3,000 simulated events hold fewer than 100 evaluable shoppers: the demo says so plainly.
    users = re.search(r"held-out quality, `bench quality` protocol: (\d+) users evaluated", output)
    assert users is not None and 0 < int(users.group(1)) < 100, output[-4000:]
    assert f"note: only {users.group(1)} users could be evaluated, fewer than 100" in output
    plot = re.search(r"quality plot \(NDCG@K and Recall@K, K = 1\.\.50\): (\S+\.png)", output)
    assert plot is not None, output[-4000:]
    with open(plot.group(1), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    # Re-runnable: the same events again store nothing new, and every step still works.
    second, leftover_again = run_demo(settings, "--dataset", "simulate", "--events", "3000")
    again = second.stdout + second.stderr
    assert second.returncode == 0, again[-4000:]
    # 3,000 streamed events plus the 3 demo clicks of the first run, nothing more.
    assert "stored MongoDB holds 3,003 events" in again, again[-4000:]
    assert "recommendations changed" in again and "demo complete" in again
    assert "its reason names the rule" in again and "after its catalog update" in again
    # The demo stopped every process it started before exiting.
    assert len(re.findall(r"\(pid (\d+),", first.stdout + second.stdout)) == 4
    assert not leftover and not leftover_again


def test_demo_fails_with_one_line_when_the_port_is_taken(settings: Settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        busy = settings.model_copy(update={"serving": settings.serving.model_copy(update={"port": port})})
        result, _ = run_demo(busy, "--dataset", "simulate", "--events", "100")
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr
