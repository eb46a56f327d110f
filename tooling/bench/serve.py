"""Command `streamrec bench serve` (and the API helpers `bench freshness` and `bench online` share).

A model is trained on simulated storefront interactions by the product's own retrain code at the
configured ``model.factors`` (512 by default), with the index retrain builds for that catalog size,
and published to a scratch registry (``tooling.bench.serve_trained``); Redis gets popularity and
recent events; `streamrec serve` runs in a subprocess. Two phases, each on a fresh API process:
``uncached`` (``serving.cache_ttl_s=0``: every request computes its answer) and ``cached`` (the
production default). In each, ``wrk`` (closed loop) measures the saturating rate of the
recommendations route and of /healthz (the framework ceiling, served through the same LeanRoute
machinery) in alternating rounds; then an open-loop generator in a separate process sends requests at
half that phase's saturating rate and reports latency from each request's scheduled send time (no
coordinated omission), counting refused connections and timeouts as errors. Users are drawn from a
Zipf distribution (``--zipf-s``) over the simulated shoppers, most active first, so result-cache hits
happen as often as that skew makes them; the hit ratios come from the API's own Prometheus counters.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from core.recent import recent_member
from core.settings import ModelSettings
from tooling.app import bench_app
from tooling.bench.common import scratch_stack, write_report
from tooling.bench.serve_load import (
    WRK_DONE,
    alternate_closed_loops,
    cache_counts,
    hit_ratio,
    rate_ratio,
    run_open_loop,
    run_wrk,
    write_zipf_table,
    zipf_script,
)

# The targets, at 100k and 1M items.
TARGETS = {
    "ratio_uncached_min": 0.5,
    "ratio_cached_min": 0.7,
    "p99_ms_max": 25.0,
    "errors": 0,
    "ann_recall@20_min": 0.95,
}
SESSION_USERS = 10_000


# ---------------------------------------------------------------- Redis state


def seed_redis(settings: Any, item_ids: Any, pop: Any, session_users: list[str], seed: int = 1) -> None:
    """Popularity for the top items, a few recent clicks for ``session_users``, a few unavailable items."""
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
        for u, uid in enumerate(session_users):
            for n, j in enumerate(rng.integers(0, len(items), 5)):
                member = recent_member(f"b{u}-{n}", str(items[j]), "click")
                pipe.zadd(keys.recent(uid), {member: now - n * 1000})
            pipe.set(keys.marker(uid), 5)
            if u % 500 == 499:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


# ---------------------------------------------------------------- plumbing


def serving_settings(settings: Any, port: int) -> Any:
    serving = settings.serving.model_copy(
        update={"host": "127.0.0.1", "port": port, "public_read": True, "model_poll_s": 1.0}
    )
    return settings.model_copy(update={"serving": serving, "log_level": "WARNING"})


def start_api(settings: Any, log_dir: Path, workers: int, name: str = "serve") -> Any:
    import httpx

    from tooling.devstack.processes import start_streamrec

    proc = start_streamrec(["serve", "--workers", str(workers)], settings, name=name, log_dir=log_dir)
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


def api_peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of the API process, summed with its workers' when it has some
    (uvicorn's supervisor holds no model); None where /proc cannot tell."""
    from tooling.bench.cpu_placement import children_of

    total = 0.0
    for one in (pid, *children_of(pid)):
        try:
            status = Path(f"/proc/{one}/status").read_text()
            total += int(status.split("VmHWM:", 1)[1].split()[0]) / 1024
        except (OSError, IndexError, ValueError):
            return None
    return round(total, 1)


# ---------------------------------------------------------------- commands


def run_phase(
    settings: Any,
    log_dir: Path,
    name: str,
    workers: int,
    connections: int,
    duration: int,
    table: Path,
    users: int,
) -> dict[str, Any]:
    """One API process: closed loops (recommendations vs /healthz), then the open loop at half rate."""
    proc = start_api(settings, log_dir, workers, name=f"serve-{name}")
    try:
        base_url = f"http://127.0.0.1:{settings.serving.port}"
        recs_script = log_dir / f"recs-{name}.lua"
        recs_script.write_text(zipf_script(table, salt=len(name)))
        health_script = log_dir / "healthz.lua"
        health_script.write_text(WRK_DONE)
        run_wrk(base_url + "/", 3, connections, recs_script)  # warm-up
        before = cache_counts(base_url)
        recs, health = alternate_closed_loops(
            (base_url + "/", recs_script), (base_url + "/healthz", health_script), duration, connections
        )
        closed = cache_counts(base_url)
        rate = recs["rps"] / 2
        half = run_open_loop("127.0.0.1", settings.serving.port, rate, duration, users, zipf_table=table)
        after = cache_counts(base_url)
        peak_rss = api_peak_rss_mib(proc.pid)
    finally:
        proc.stop()
    return {
        "result_cache_ttl_s": settings.serving.cache_ttl_s,
        "rps": recs["rps"],
        "healthz_rps": health["rps"],
        "ratio": rate_ratio(recs["rps"], health["rps"]),
        "saturated_p50_ms": recs["p50_ms"],
        "saturated_p99_ms": recs["p99_ms"],
        "healthz_p99_ms": health["p99_ms"],
        "rounds_rps": recs["rounds_rps"],
        "rounds_healthz_rps": health["rounds_rps"],
        "half_rate_rps": rate,
        "half_rate_sent": half["sent"],
        "half_rate_completed": half["completed"],
        "p50_ms": half["p50_ms"],
        "p99_ms": half["p99_ms"],
        "hit_ratio_closed": hit_ratio(before, closed),
        # Every request is one cache lookup: with several workers, equal counts show /metrics sums them.
        "cache_lookups_closed": sum(closed) - sum(before),
        "requests_closed": recs["requests"],
        "hit_ratio_open": hit_ratio(closed, after),
        "errors": recs["errors"] + health["errors"] + half["errors"],
        "errors_closed_recs": recs["errors"],
        "errors_closed_healthz": health["errors"],
        "errors_open": half["errors_by_kind"],
        # The API's memory with the model loaded, after both loads: what a serving host must hold.
        "api_peak_rss_mib": peak_rss,
    }


@bench_app.command("serve")
def bench_serve(
    items: int = typer.Option(100_000, "--items", min=100, help="Simulated catalog size."),
    users: int = typer.Option(50_000, "--users", min=10, help="Simulated shoppers."),
    events: int = typer.Option(
        0, "--events", min=0, help="Simulated interactions the model is trained on (0: 10 per item)."
    ),
    duration: int = typer.Option(30, "--duration", min=3, help="Seconds per closed-loop run."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    workers: int = typer.Option(1, "--workers", min=1, help="uvicorn workers of the API under test."),
    connections: int = typer.Option(32, "--connections", min=1),
    zipf_s: float = typer.Option(
        1.1, "--zipf-s", min=0.0, help="Exponent of the Zipf distribution requests draw users from."
    ),
) -> None:
    """Requests/s of GET recommendations vs /healthz, uncached and cached, then p99 at half the
    saturating rate, on a model trained by retrain's code at model.factors."""
    from tooling.bench.serve_trained import train_and_publish
    from tooling.devstack.processes import free_port

    console = Console()
    with scratch_stack("serve", console) as base:
        log_dir = Path(tempfile.mkdtemp(prefix="streamrec-bench-serve-"))
        # The model's files are cached on disk by the trainer's registry and read from there by the API
        # (a GiB-sized artifact at 1M items): in the run's own folder, removed at the end.
        cache = log_dir / "artifacts"
        settings = serving_settings(base, free_port())
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"artifact_cache_dir": cache})}
        )
        n_events = events or 10 * items
        with console.status(
            f"simulating {n_events} interactions and training ({settings.model.factors} factors)"
        ):
            trained = train_and_publish(settings, items, users, n_events)
        console.print(
            f"model v{trained.version}: {trained.items} items, {trained.users} users, "
            f"index {trained.index.get('kind')}, recall@20 {trained.ann_recall_at_20}, {trained.timings}"
        )
        seed_redis(settings, trained.item_ids, trained.item_popularity, trained.user_order[:SESSION_USERS])
        table = write_zipf_table(log_dir / "zipf_users.txt", trained.user_order, zipf_s)
        load_before = os.getloadavg()
        phases: dict[str, dict[str, Any]] = {}
        for name, ttl in (("uncached", 0), ("cached", settings.serving.cache_ttl_s)):
            phase_settings = settings.model_copy(
                update={"serving": settings.serving.model_copy(update={"cache_ttl_s": ttl})}
            )
            with console.status(f"{name}: closed loops {duration}s each, then the open loop"):
                phases[name] = run_phase(
                    phase_settings,
                    log_dir,
                    name,
                    workers,
                    connections,
                    duration,
                    table,
                    len(trained.user_order),
                )
        load_after = os.getloadavg()
        shutil.rmtree(cache, ignore_errors=True)
    uncached, cached = phases["uncached"], phases["cached"]
    report = {
        "items": items,
        "model_items": trained.items,
        "users": users,
        "model_users": trained.users,
        "events": n_events,
        "trained": True,
        "factors": trained.factors,
        "dim": trained.dim,
        "default_retrain_factors": ModelSettings().factors,
        "retrain_outcome": trained.outcome,
        "model_version": trained.version,
        "exact_search_max_items": settings.model.exact_search_max_items,
        "index": trained.index,
        "ann_recall@20": trained.ann_recall_at_20,
        "ann_recall_users": trained.recall_users,
        "zipf_s": zipf_s,
        "workers": workers,
        "connections": connections,
        "duration_s": duration,
        "ratio_uncached": uncached["ratio"],
        # The index search alone, timed in the trainer's process (no load): with /healthz's time per
        # request, the best uncached ratio any serving path around this index could reach.
        "search_us_mean": trained.timings.get("search_us_mean"),
        "ratio_uncached_search_bound": search_bound(
            uncached["healthz_rps"], trained.timings.get("search_us_mean")
        ),
        "ratio_cached": cached["ratio"],
        "hit_ratio_closed": cached["hit_ratio_closed"],
        "hit_ratio_open": cached["hit_ratio_open"],
        "p99_ms_uncached": uncached["p99_ms"],
        "p99_ms_cached": cached["p99_ms"],
        "errors": uncached["errors"] + cached["errors"],
        "api_peak_rss_mib": max((p["api_peak_rss_mib"] or 0.0) for p in (uncached, cached)) or None,
        # Today's keys, for the production default (the cached phase).
        "rps": cached["rps"],
        "healthz_rps": cached["healthz_rps"],
        "ratio": cached["ratio"],
        "p50_ms": cached["p50_ms"],
        "p99_ms": cached["p99_ms"],
        "result_cache_ttl_s": cached["result_cache_ttl_s"],
        "phases": phases,
        "model_timings": trained.timings,
        "targets": TARGETS,
        "cpu_cores": _cores(),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
    }
    write_report(json_path, report, console, "bench serve")


def search_bound(healthz_rps: float, search_us: float | None) -> float | None:
    """healthz's time per request over that time plus one index search: an uncached request does at
    least both on the same event loop, so its ratio to /healthz cannot be higher."""
    if not search_us or healthz_rps <= 0:
        return None
    per_request_us = 1e6 / healthz_rps
    return round(per_request_us / (per_request_us + search_us), 4)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
