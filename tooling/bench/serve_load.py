"""Load generators of `streamrec bench serve` (and `bench online`): wrk closed loops, the open loop,
the Zipf user table they draw from, and the API's cache counters.

Users are drawn from a Zipf distribution over a ranked list of user ids (P(rank r) ∝ r^-s): on a
storefront a few shoppers view many pages and most view a few, and that skew is what makes result-cache
hits happen. The table is written once (``write_zipf_table``: cumulative probability and user id per
line) and read by both generators, wrk's Lua and the Python open loop, so both draw the same way.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.errors import StreamrecError
from tooling.settings import MissingTool

# Uniform draws among u0..u{users-1} (bench online's request mix).
WRK_REQUEST = """
math.randomseed(os.time())
local users = {users}
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, users - 1) .. "/recommendations?k=10")
end
"""
# Zipf draws: binary search of a uniform number in the table's cumulative probabilities (the first
# rank whose cumulative probability reaches it, as numpy's searchsorted(side="left") finds it).
WRK_ZIPF_REQUEST = """
local cdf, ids = {}, {}
for line in io.lines("@TABLE@") do
  local p, id = line:match("^(%S+) (%S+)$")
  cdf[#cdf + 1] = tonumber(p)
  ids[#ids + 1] = id
end
local n = #cdf
math.randomseed(os.time() + @SALT@)
request = function()
  local r = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/v1/users/" .. ids[lo] .. "/recommendations?k=10")
end
"""
# Prints one machine-readable line; used by every run.
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
REQUEST_TIMEOUT_S = 5.0  # wrk's --timeout below: a slower answer is an error in both loops


# ---------------------------------------------------------------- Zipf users


def zipf_cdf(n: int, s: float) -> np.ndarray:
    """Cumulative P(rank <= r) for ranks 1..n with P(r) ∝ r^-s; the last entry is exactly 1."""
    if n < 1:
        raise ValueError("a Zipf table needs at least one user")
    if s < 0:
        raise ValueError(f"the Zipf exponent must not be negative, got {s}")
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -s)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def zipf_rank(cdf: Sequence[float] | np.ndarray, u: float) -> int:
    """0-based rank for a uniform draw ``u`` in [0, 1): the first whose cumulative probability >= u."""
    return min(bisect.bisect_left(cdf, u), len(cdf) - 1)


def write_zipf_table(path: Path, user_ids: Sequence[str], s: float) -> Path:
    cdf = zipf_cdf(len(user_ids), s)
    path.write_text("".join(f"{p!r} {u}\n" for p, u in zip(cdf.tolist(), user_ids, strict=True)))
    return path


def read_zipf_table(path: Path) -> tuple[list[float], list[str]]:
    cdf: list[float] = []
    ids: list[str] = []
    for line in path.read_text().splitlines():
        p, user = line.split(" ", 1)
        cdf.append(float(p))
        ids.append(user)
    return cdf, ids


def zipf_script(table: Path, salt: int = 0) -> str:
    return WRK_ZIPF_REQUEST.replace("@TABLE@", str(table)).replace("@SALT@", str(salt)) + WRK_DONE


# ---------------------------------------------------------------- closed loop (wrk)


def run_wrk(url: str, duration: int, connections: int, script: Path | None) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise MissingTool("wrk is not installed; install it (apt-get install wrk) to run this benchmark")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", f"{REQUEST_TIMEOUT_S:.0f}s"]
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
    return combine(runs[0]), combine(runs[1])


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
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


# ---------------------------------------------------------------- open loop


async def _open_loop(
    host: str, port: int, rate: float, duration: float, draw_user: Any, max_conns: int
) -> dict[str, Any]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    # How late each request left against its schedule: a generator short of CPU shows here (its
    # lateness is in the latency too, as it would be for a client whose request waited to be sent).
    lags: list[float] = []
    errors = {"connect": 0, "timeout": 0, "read": 0, "status": 0}

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return head

    async def one(scheduled: float) -> None:
        nonlocal opened
        if pool.empty() and opened < max_conns:
            opened += 1
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), REQUEST_TIMEOUT_S)
            except (OSError, TimeoutError):
                # A refused or timed-out connection is a request the server did not answer.
                opened -= 1
                errors["connect"] += 1
                return
            pool.put_nowait(conn)
        reader, writer = await pool.get()
        path = f"/v1/users/{draw_user()}/recommendations?k=10"
        lags.append(time.perf_counter() - scheduled)
        try:
            head = await asyncio.wait_for(exchange(reader, writer, path), REQUEST_TIMEOUT_S)
        except TimeoutError:
            errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            errors["read"] += 1
        else:
            if not head.startswith(b"HTTP/1.1 200"):
                errors["status"] += 1
            latencies.append(time.perf_counter() - scheduled)
            pool.put_nowait((reader, writer))
            return
        # The connection is in an unknown state after a failure: close it; the next request opens one.
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
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    # Nothing may vanish: an exception no branch above expected is an error too.
    errors["other"] = sum(1 for o in outcomes if isinstance(o, BaseException))
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    lags.sort()
    return {
        "sent": n,
        "completed": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "send_lag_p99_ms": lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1000 if lags else float("nan"),
    }


def open_loop_main() -> None:
    """Entry point of the load-generator subprocess: argv = host port rate duration users [zipf table]."""
    host, port, rate, duration, users = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
    if len(sys.argv) > 6:
        cdf, ids = read_zipf_table(Path(sys.argv[6]))
        draw = lambda: ids[zipf_rank(cdf, random.random())]  # noqa: E731
    else:
        draw = lambda: f"u{random.randrange(int(users))}"  # noqa: E731
    # uvloop when installed (uvicorn[standard] brings it): the generator then needs less of the CPU
    # it shares with what it measures.
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_open_loop(host, port, rate, duration, draw, max_conns=256))
    sys.stdout.write("OPENLOOP " + orjson.dumps(result).decode() + "\n")


def run_open_loop(
    host: str, port: int, rate: float, duration: float, users: int, zipf_table: Path | None = None
) -> dict[str, Any]:
    code = "from tooling.bench.serve_load import open_loop_main; open_loop_main()"
    args = [sys.executable, "-c", code, host, str(port), str(rate), str(duration), str(users)]
    if zipf_table is not None:
        args.append(str(zipf_table))
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("OPENLOOP ")), None)
    if line is None:
        raise StreamrecError(f"open-loop generator failed: {out.stderr[-800:]}")
    return dict(orjson.loads(line.removeprefix("OPENLOOP ")))


# ---------------------------------------------------------------- the API's own counts


def cache_counts(base_url: str) -> tuple[float, float]:
    """(hits, misses) of the API's result cache, from its Prometheus metrics (summed over workers in
    multiprocess mode)."""
    import httpx

    text = httpx.get(base_url + "/metrics", timeout=10.0).text
    return parse_cache_counts(text)


def parse_cache_counts(text: str) -> tuple[float, float]:
    found = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        for kind in found:
            if line.startswith(f"streamrec_serving_cache_{kind}_total "):
                found[kind] = float(line.split()[1])
    return found["hits"], found["misses"]


def hit_ratio(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Share of cache lookups between two readings that were hits; None when there were none."""
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses > 0 else None


def rate_ratio(rps: float, ceiling_rps: float) -> float | None:
    """Requests/s of an endpoint over the framework ceiling's; None when the ceiling was not measured."""
    return rps / ceiling_rps if ceiling_rps > 0 else None
