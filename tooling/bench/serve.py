"""Command `streamrec bench serve` (and the helpers `streamrec bench freshness` shares).

serve: a synthetic ``ModelArtifact`` (clustered embeddings, see ``tooling.bench.serve_model``) is
published to a scratch registry, Redis gets popularity and recent events, and `streamrec serve`
runs in a subprocess. ``wrk`` (closed loop, random user ids) measures the saturating rate of the
recommendations endpoint and of /healthz (the framework ceiling); then an open-loop generator in a
separate process sends requests at half the saturating rate and reports latency measured from each
request's scheduled send time (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from core.errors import StreamrecError
from core.recent import recent_member
from tooling.app import bench_app
from tooling.bench.common import scratch_stack
from tooling.settings import MissingTool

WRK_REQUEST = """
math.randomseed(os.time())
local users = {users}
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, users - 1) .. "/recommendations?k=10")
end
"""
# Prints one machine-readable line; used by both runs.
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%f,"p99_us":%f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------- synthetic model and Redis state


def seed_redis(settings: Any, item_ids: Any, pop: Any, session_users: int, seed: int = 1) -> None:
    """Popularity for the top items, a few recent clicks for some users, a few unavailable items."""
    import numpy as np
    import redis

    from core.keys import Keys

    keys = Keys(settings.redis.key_prefix)
    rng = np.random.default_rng(seed)
    items = item_ids
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        top = np.argsort(-pop)[:5000]
        pipe = client.pipeline(transaction=False)
        pipe.zadd(keys.pop_all(), {str(items[j]): float(pop[j]) for j in top})
        pipe.sadd(keys.unavailable(), *[str(items[j]) for j in top[:20:4]])
        now = int(time.time() * 1000)
        for u in range(session_users):
            uid = f"u{u}"
            for n, j in enumerate(rng.integers(0, len(items), 5)):
                member = recent_member(f"b{u}-{n}", str(items[j]), "click")
                pipe.zadd(keys.recent(uid), {member: now - n * 1000})
            pipe.set(keys.marker(uid), 5)
            if u % 500 == 499:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


# ---------------------------------------------------------------- load generators


def run_wrk(url: str, duration: int, connections: int, script: Path | None) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise MissingTool("wrk is not installed; install it (apt-get install wrk) to run this benchmark")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise StreamrecError(f"wrk produced no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    raw = orjson.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
    }


def cache_counts(base_url: str) -> tuple[float, float]:
    """(hits, misses) of the API's result cache, from its Prometheus metrics."""
    import httpx

    text = httpx.get(base_url + "/metrics", timeout=10.0).text
    found = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        for kind in found:
            if line.startswith(f"streamrec_serving_cache_{kind}_total "):
                found[kind] = float(line.split()[1])
    return found["hits"], found["misses"]


def _hit_ratio(before: tuple[float, float], after: tuple[float, float]) -> float:
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses else 0.0


def alternate_closed_loops(
    a: tuple[str, Path], b: tuple[str, Path], duration: int, connections: int, rounds: int = 3
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both closed loops in alternating rounds (a, b, a, b, ...), ``duration`` seconds each in total:
    a shared machine drifts in speed over a minute, and the ratio of the two rates should not depend
    on which one happened to run in the faster half."""
    per_round = max(1, duration // rounds)
    runs: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for _ in range(rounds):
        for (url, script), out in ((a, runs[0]), (b, runs[1])):
            out.append(run_wrk(url, per_round, connections, script))
    return _combine(runs[0]), _combine(runs[1])


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(r["requests"] for r in runs)
    elapsed = sum(r["requests"] / r["rps"] for r in runs if r["rps"])
    return {
        "rps": total / elapsed if elapsed else 0.0,
        "requests": total,
        # The slowest round's percentiles: the honest summary without the raw latencies.
        "p50_ms": max(r["p50_ms"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rounds_rps": [round(r["rps"], 1) for r in runs],
    }


async def _open_loop(
    host: str, port: int, rate: float, duration: float, users: int, max_conns: int
) -> dict[str, Any]:
    import random

    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    # How late each request left against its schedule: a generator short of CPU shows here (its
    # lateness is in the latency too, as it would be for a client whose request waited to be sent).
    lags: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal opened, errors
        if pool.empty() and opened < max_conns:
            opened += 1
            pool.put_nowait(await asyncio.open_connection(host, port))
        reader, writer = await pool.get()
        path = f"/v1/users/u{random.randrange(users)}/recommendations?k=10"
        lags.append(time.perf_counter() - scheduled)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(time.perf_counter() - scheduled)
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            opened -= 1
            writer.close()

    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    n = 0
    while True:
        scheduled = start + n / rate
        if scheduled - start > duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
        n += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    lags.sort()
    lag_p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1000 if lags else float("nan")
    return {
        "sent": n,
        "completed": len(latencies),
        "errors": errors,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "send_lag_p99_ms": lag_p99,
    }


def open_loop_main() -> None:
    """Entry point of the load-generator subprocess: argv = host port rate duration users."""
    host, port, rate, duration, users = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
    # uvloop when installed (uvicorn[standard] brings it): the generator then needs less of the CPU
    # it shares with what it measures.
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_open_loop(host, port, rate, duration, int(users), max_conns=256))
    sys.stdout.write("OPENLOOP " + orjson.dumps(result).decode() + "\n")


def run_open_loop(host: str, port: int, rate: float, duration: float, users: int) -> dict[str, Any]:
    code = "from tooling.bench.serve import open_loop_main; open_loop_main()"
    args = [sys.executable, "-c", code, host, str(port), str(rate), str(duration), str(users)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("OPENLOOP ")), None)
    if line is None:
        raise StreamrecError(f"open-loop generator failed: {out.stderr[-800:]}")
    return dict(orjson.loads(line.removeprefix("OPENLOOP ")))


# ---------------------------------------------------------------- plumbing


def serving_settings(settings: Any, port: int) -> Any:
    serving = settings.serving.model_copy(
        update={"host": "127.0.0.1", "port": port, "public_read": True, "model_poll_s": 1.0}
    )
    return settings.model_copy(update={"serving": serving, "log_level": "WARNING"})


def start_api(settings: Any, log_dir: Path, workers: int) -> Any:
    import httpx

    from tooling.devstack.processes import start_streamrec

    proc = start_streamrec(["serve", "--workers", str(workers)], settings, name="serve", log_dir=log_dir)
    url = f"http://127.0.0.1:{settings.serving.port}/readyz"

    def ready() -> bool:
        # /readyz is 200 without a model too (popularity mode): wait for the model itself.
        try:
            resp = httpx.get(url, timeout=2.0)
            return resp.status_code == 200 and str(resp.json()["checks"]["model"]).startswith("ok")
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    proc.wait_until(ready, 300, "GET /readyz answers 200 (model loaded)", interval_s=0.5)
    return proc


def write_report(path: Path, report: dict[str, Any], console: Console, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if not isinstance(value, dict | list):
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------- commands


@bench_app.command("serve")
def bench_serve(
    items: int = typer.Option(100_000, "--items", min=10),
    users: int = typer.Option(50_000, "--users", min=10),
    duration: int = typer.Option(30, "--duration", min=3, help="Seconds per closed-loop run."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    workers: int = typer.Option(1, "--workers", min=1),
    connections: int = typer.Option(32, "--connections", min=1),
    factors: int = typer.Option(
        128,
        "--factors",
        "--dim",
        min=4,
        help="Factors of the synthetic model (retrain's default: model.factors; artifact dim = +1 bias).",
    ),
    index: str = typer.Option(
        "auto",
        "--index",
        help="auto (exact up to model.exact_search_max_items, model.ann_index above), exact, ivf or hnsw.",
    ),
    result_cache: bool = typer.Option(
        True,
        "--result-cache/--no-result-cache",
        help="Off: every request computes its answer (serving.cache_ttl_s=0), the uncached cost.",
    ),
) -> None:
    """Requests/s and latency of GET recommendations vs /healthz, then p99 at half the saturating rate."""
    from tooling.bench.serve_model import publish_artifact, synthetic_artifact
    from tooling.devstack.processes import free_port

    if index not in ("auto", "exact", "ivf", "hnsw"):
        raise StreamrecError(f"--index must be auto, exact, ivf or hnsw, got {index!r}")
    console = Console()
    with scratch_stack("serve", console) as base:
        settings = serving_settings(base, free_port())
        if not result_cache:
            settings = settings.model_copy(
                update={"serving": settings.serving.model_copy(update={"cache_ttl_s": 0})}
            )
        if index != "auto":
            # The API process reads the same settings, so it keeps the published index kind.
            limit = items if index == "exact" else 1
            kind = settings.model.ann_index if index == "exact" else index
            model = settings.model.model_copy(update={"exact_search_max_items": limit, "ann_index": kind})
            settings = settings.model_copy(update={"model": model})
        with console.status(f"building a synthetic model: {items} items, {users} users, {factors} factors"):
            synth = synthetic_artifact(items, users, factors, settings)
        with console.status("publishing the model artifact"):
            version = publish_artifact(settings, synth.artifact)
            item_ids = synth.artifact.item_ids
            dim = synth.artifact.dim
            seed_redis(settings, item_ids, synth.popularity, session_users=min(users, 10_000))
        log_dir = Path(tempfile.mkdtemp(prefix="streamrec-bench-serve-"))
        with console.status("starting the API (loading the model)"):
            proc = start_api(settings, log_dir, workers)
        try:
            base_url = f"http://127.0.0.1:{settings.serving.port}"
            script = log_dir / "recs.lua"
            script.write_text(WRK_REQUEST.format(users=users) + WRK_DONE)
            summary_script = log_dir / "summary.lua"
            summary_script.write_text(WRK_DONE)
            with console.status("warm-up"):
                run_wrk(base_url + "/", 3, connections, script)
            load_before = os.getloadavg()
            cache_before = cache_counts(base_url)
            with console.status(f"closed loop: recommendations and /healthz, {duration}s each"):
                recs, health = alternate_closed_loops(
                    (base_url + "/", script), (base_url + "/healthz", summary_script), duration, connections
                )
            cache_after = cache_counts(base_url)
            rate = recs["rps"] / 2
            with console.status(f"open loop: {rate:.0f} req/s for {duration}s"):
                half = run_open_loop("127.0.0.1", settings.serving.port, rate, duration, users)
            load_after = os.getloadavg()
        finally:
            proc.stop()
    report = {
        "items": items,
        "users": users,
        "factors": factors,
        "dim": dim,
        "default_retrain_factors": base.model.factors,
        "index": synth.index_kind,
        "exact_search_max_items": settings.model.exact_search_max_items,
        "ann": synth.ann,
        "ann_recall_at_20": synth.ann_recall_at_20,
        "ann_recall_at_50": synth.ann_recall_at_50,
        "model_version": version,
        "workers": workers,
        "result_cache_ttl_s": settings.serving.cache_ttl_s,
        "connections": connections,
        "duration_s": duration,
        "rps": recs["rps"],
        "healthz_rps": health["rps"],
        "ratio": recs["rps"] / health["rps"] if health["rps"] else 0.0,
        "p50_ms": half["p50_ms"],
        "p99_ms": half["p99_ms"],
        "errors": recs["errors"] + half["errors"],
        "saturated_p50_ms": recs["p50_ms"],
        "saturated_p99_ms": recs["p99_ms"],
        "healthz_p99_ms": health["p99_ms"],
        "half_rate_rps": rate,
        "half_rate_sent": half["sent"],
        "half_rate_completed": half["completed"],
        "healthz_errors": health["errors"],
        "rounds_rps": recs["rounds_rps"],
        # Random users among --users: a user asked for twice within the cache TTL is a cache hit.
        "cache_hit_ratio": _hit_ratio(cache_before, cache_after),
        "rounds_healthz_rps": health["rounds_rps"],
        "targets": {"ratio_min": 0.5, "p99_ms_max": 25.0, "errors": 0},
        "cpu_cores": _cores(),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
    }
    write_report(json_path, report, console, "bench serve")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
