"""`bench online`'s latency check: what impression logging costs a serving process.

Two fresh `streamrec serve` processes run side by side on the same model, Redis state and experiment, one
with ``serving.impressions.enabled`` (the production default) and one without
(``STREAMREC_SERVING__IMPRESSIONS__ENABLED=false``). Both get the same request mix (``bench serve``'s
random shoppers among the simulated ones, k=10):

1. the saturating rate of each, with ``wrk`` closed loops alternating off, on, off, on, ... (a shared
   machine drifts in speed; alternating keeps that drift out of the ratio);
2. the p99 latency of each at one fixed rate, half the saturating rate of the process with logging
   off, with ``bench serve``'s open-loop generator (latency from each request's scheduled send time),
   in rounds ordered off, on, on, off, off, on, ... (so neither always runs right after the other).
   A process's p99 is the median of its rounds' p99s: on a shared machine one round now and then
   meets another job's burst, and a single such round should not decide a 10% comparison (the
   slowest round's is reported too).

CPU seconds are read from /proc around the open-loop rounds, per phase: each API process's (so its
own CPU per request with logging off and on) and the dev Kafka broker's (Tansu, on the same two
cores: the broker's work on the impressions competes with the API here, not in production).

The consumer is stopped before this phase: in production it runs elsewhere, and here it would
compete for the same two cores with the process being measured. The impressions still go to Kafka.

With ``pin`` (the default), both APIs run on half the machine's cores and everything else (this
process, the generators it starts, the dev servers) on the other half: the API's own threads, its
Kafka client's included, share the API's cores as they would on a serving host, while the broker's
work on the impressions and the generators' bursts stay off them, as in production.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings
from tooling.bench.cpu_placement import Placement, pin_api
from tooling.bench.serve import start_api
from tooling.bench.serve_load import (
    WRK_DONE,
    WRK_REQUEST,
    alternate_closed_loops,
    run_open_loop,
    run_wrk,
)
from tooling.devstack.processes import process_cpu_seconds

# The target: serving p99 with impression logging on at most 1.1 x the p99 with it off.
P99_RATIO_TARGET = 1.1
RATIO_RESAMPLES = 1000


def p99_ratio_ci95(off_rounds: list[float], on_rounds: list[float], seed: int = 0) -> list[float] | None:
    """[low, high] of a paired bootstrap 95% interval of median(on) / median(off) over the rounds.

    Round n of each process ran back to back (ABBA order), so the pairs are resampled together; the
    interval says what the rounds can resolve: a target is shown met only when ``high`` is within it."""
    pairs = min(len(off_rounds), len(on_rounds))
    if pairs < 2:
        return None
    off, on = np.asarray(off_rounds[:pairs], float), np.asarray(on_rounds[:pairs], float)
    picks = np.random.default_rng(seed).integers(0, pairs, size=(RATIO_RESAMPLES, pairs))
    ratios = np.median(on[picks], axis=1) / np.maximum(np.median(off[picks], axis=1), 1e-9)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def impressions_off(settings: Settings, port: int) -> Settings:
    serving = settings.serving.model_copy(
        update={
            "port": port,
            "impressions": settings.serving.impressions.model_copy(update={"enabled": False}),
        }
    )
    return settings.model_copy(update={"serving": serving})


def broker_pids(name: str = "tansu") -> list[int]:
    """The dev broker's processes (by command name), for its CPU seconds."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if name in (entry / "comm").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu(pids: list[int]) -> float:
    return sum(process_cpu_seconds(p) or 0.0 for p in pids)


def _timed_cpu(
    pids: dict[str, list[int]], work: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, float]]:
    before = {k: _cpu(v) for k, v in pids.items()}
    out = work()
    return out, {k: _cpu(v) - before[k] for k, v in pids.items()}


def latency_off_on(
    on_settings: Settings,
    off_settings: Settings,
    *,
    log_dir: Path,
    users: int,
    duration_s: int,
    rounds: int,
    connections: int,
    workers: int,
    ready: Any,
    pin: bool = True,
) -> dict[str, Any]:
    """Start a fresh API with logging off and one with it on, measure both, stop them.

    ``ready(base_url)`` waits until an API serves the experiment (so both answer the same mix).
    ``pin`` gives the two APIs half the cores and the generators and dev servers the other half
    (``tooling.bench.cpu_placement``), restored afterwards."""
    off_port, on_port = off_settings.serving.port, on_settings.serving.port
    off_api = start_api(off_settings, log_dir, workers)
    on_api = start_api(on_settings, log_dir, workers)
    on_pid: int | None = on_api.pid if workers == 1 else None
    placement: Placement | None = None
    try:
        on_url, off_url = f"http://127.0.0.1:{on_port}", f"http://127.0.0.1:{off_port}"
        ready(off_url)
        ready(on_url)
        # After both are ready: their threads (the Kafka client's included) exist by now.
        placement = pin_api([off_api.pid, on_api.pid]) if pin else None
        script = log_dir / "online-recs.lua"
        script.write_text(WRK_REQUEST.format(users=users) + WRK_DONE)
        for url in (off_url, on_url):  # warm both (result cache, connections, first-call costs)
            run_wrk(url + "/", 3, connections, script)
        off_sat, on_sat = alternate_closed_loops(
            (off_url + "/", script), (on_url + "/", script), duration_s, connections, rounds
        )
        rate = off_sat["rps"] / 2
        per_round = max(2.0, duration_s / rounds)
        off_runs: list[dict[str, Any]] = []
        on_runs: list[dict[str, Any]] = []
        pids = {"api": [on_pid] if on_pid else [], "broker": broker_pids()}
        cpu: dict[str, dict[str, float]] = {"off": {}, "on": {}}
        for n in range(rounds):
            # ABBA: off, on, on, off, ...: neither process always runs right after the other.
            pairs = [(off_port, off_runs, "off"), (on_port, on_runs, "on")]
            for port, runs, phase in pairs if n % 2 == 0 else pairs[::-1]:
                watched = {**pids, "api": [off_api.pid] if phase == "off" else pids["api"]}
                if workers > 1:
                    watched["api"] = []
                result, used = _timed_cpu(
                    watched, functools.partial(run_open_loop, "127.0.0.1", port, rate, per_round, users)
                )
                runs.append(result)
                for key, seconds in used.items():
                    cpu[phase][key] = cpu[phase].get(key, 0.0) + seconds
    finally:
        if placement is not None:
            placement.restore()
        off_api.stop()
        on_api.stop()
    p99_off = statistics.median(r["p99_ms"] for r in off_runs)
    p99_on = statistics.median(r["p99_ms"] for r in on_runs)
    sent = {
        phase: sum(r.get("sent", 0) for r in runs) for phase, runs in (("off", off_runs), ("on", on_runs))
    }
    return {
        "api_cpu_us_per_request_off": _per_request(cpu["off"].get("api"), sent["off"], on_pid),
        "api_cpu_us_per_request_on": _per_request(cpu["on"].get("api"), sent["on"], on_pid),
        "broker_cpu_s_off": round(cpu["off"].get("broker", 0.0), 3) if pids["broker"] else None,
        "broker_cpu_s_on": round(cpu["on"].get("broker", 0.0), 3) if pids["broker"] else None,
        "open_loop_requests_off": sent["off"],
        "open_loop_requests_on": sent["on"],
        "saturating_rps_off": off_sat["rps"],
        "saturating_rps_on": on_sat["rps"],
        "saturating_rounds_rps_off": off_sat["rounds_rps"],
        "saturating_rounds_rps_on": on_sat["rounds_rps"],
        "half_rate_rps": rate,
        "p99_off_ms": p99_off,
        "p99_on_ms": p99_on,
        "p99_ratio": p99_on / p99_off if p99_off else None,
        "p99_ratio_ci95": p99_ratio_ci95([r["p99_ms"] for r in off_runs], [r["p99_ms"] for r in on_runs]),
        "p99_ratio_target": P99_RATIO_TARGET,
        "p99_max_off_ms": max(r["p99_ms"] for r in off_runs),
        "p99_max_on_ms": max(r["p99_ms"] for r in on_runs),
        "p99_rounds_off_ms": [round(r["p99_ms"], 3) for r in off_runs],
        "p99_rounds_on_ms": [round(r["p99_ms"], 3) for r in on_runs],
        "send_lag_p99_max_ms": max(r.get("send_lag_p99_ms", 0.0) for r in off_runs + on_runs),
        "p50_off_ms": statistics.median(r["p50_ms"] for r in off_runs),
        "p50_on_ms": statistics.median(r["p50_ms"] for r in on_runs),
        "latency_errors": off_sat["errors"] + on_sat["errors"] + sum(r["errors"] for r in off_runs + on_runs),
        "latency_order": "closed loops off, on, off, on, ...; open loops off, on, on, off, ...",
        "latency_rounds": rounds,
        "latency_duration_s": duration_s,
        "connections": connections,
        "workers": workers,
        "cpu_placement": placement.as_json() if placement is not None else None,
    }


def _per_request(seconds: float | None, requests: int, pid: int | None) -> float | None:
    if pid is None or seconds is None or requests <= 0:
        return None
    return round(seconds / requests * 1e6, 1)
