"""Smoke test of `streamrec bench chaos`: a 15-second run on its own private dev stack.

It checks the benchmark itself (it ends, injects every fault, accounts for what it sent, reports
consistently and leaves no server behind), not that the product passes: the `passed` verdict is
the benchmark's job, recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tooling.bench.chaos_plan import FAULT_KINDS, passed
from tooling.devstack.processes import REPO_ROOT

KEYS = {
    "events_sent", "stored", "dead_lettered", "lost", "duplicates", "poison_sent", "poison_dead_lettered",
    "http_5xx", "faults", "redis_consistent", "command", "git_revision", "minutes", "rates", "passed",
    "api_down_windows",
}  # fmt: skip


def _chaos_processes() -> set[int]:
    """Pids whose command line names a chaos run's private stack directory."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"streamrec-chaos-" in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                continue
    return found


def test_short_chaos_run_reports_every_fault_and_cleans_up(tmp_path: Path) -> None:
    before = _chaos_processes()
    out = tmp_path / "chaos.json"
    args = [
        "bench", "chaos", "--minutes", "0.25", "--json", str(out), "--kafka-rate", "40", "--http-rate", "20",
        "--http-batch", "5", "--recs-rate", "5", "--poison-share", "0.03", "--mongo-down-s", "1",
        "--drain-idle-s", "8",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = orjson.loads(out.read_bytes())
    assert set(report) >= KEYS
    assert [f["kind"] for f in report["faults"]] == list(FAULT_KINDS)
    for fault in report["faults"]:
        assert "error" not in fault, fault
        assert fault["restored_s"] >= fault["at_s"] >= 0
        assert fault["recovery_s"] is None or fault["recovery_s"] > 0
    assert report["events_sent"] == report["kafka_events_acked"] + report["http_events_accepted"] > 0
    assert 0 <= report["lost"] <= report["events_sent"]
    assert report["poison_sent"] > 0 and 0 <= report["poison_dead_lettered"] <= report["poison_sent"]
    assert report["http_poison_sent"] == report["http_poison_rejected"] + report["http_poison_accepted"]
    assert report["recs_requests"] > 0
    assert len(report["api_down_windows"]) >= 1  # the scheduled API kill
    assert report["passed"] == (passed(report) and not report["thread_errors"])
    assert "bench chaos" in report["command"]
    # Every server, consumer and API the run started is gone.
    assert _chaos_processes() <= before
