"""Where a latency benchmark's processes run: the API measured on cores of its own (Linux only).

On a small shared machine the load generator, the dev servers (Kafka, MongoDB, Redis) and the API
measured take turns on the same cores, and a p99 then says as much about the generator's and the
servers' bursts as about the API. In production the API has its host's cores and the broker and the
clients run elsewhere. ``pin_api`` puts every thread of the API processes on one set of cores and
everything else the benchmark runs (this process, whatever it starts later, the dev servers) on the
others; what the API does itself, its Kafka client's threads included, stays on the API's cores.
``restore`` puts every process it moved back where it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# The dev servers' command names (/proc/PID/comm, at most 15 characters).
DEV_SERVER_NAMES = ("tansu", "redis-server", "secantusd-py", "secantusd")


def split_cpus(cpus: Iterable[int]) -> tuple[list[int], list[int]] | None:
    """The API's cores (the first half, at least one) and the rest's; None with a single core."""
    ordered = sorted(set(cpus))
    if len(ordered) < 2:
        return None
    half = max(1, len(ordered) // 2)
    return ordered[:half], ordered[half:]


def tasks_of(pid: int) -> list[int]:
    """Thread ids of a process (its threads must be pinned one by one: affinity is per thread)."""
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if t.name.isdigit()]
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (uvicorn's workers when ``--workers`` > 1)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def pids_named(names: Iterable[str]) -> list[int]:
    wanted = set(names)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Placement:
    """What ``pin_api`` did: the two core sets and every thread's previous affinity."""

    api_cpus: list[int]
    other_cpus: list[int]
    previous: dict[int, set[int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"api_cpus": self.api_cpus, "load_and_servers_cpus": self.other_cpus}

    def restore(self) -> None:
        for tid, cpus in self.previous.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # the thread is gone: nothing to restore
                continue


def _pin(placement: Placement, pids: Iterable[int], cpus: list[int]) -> None:
    for pid in pids:
        for tid in tasks_of(pid):
            try:
                placement.previous.setdefault(tid, os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, cpus)
            except OSError as exc:  # a thread that ended meanwhile, or not ours to move
                log.debug("event=pin_failed tid=%d error=%s", tid, exc)


def pin_api(api_pids: Iterable[int]) -> Placement | None:
    """Pin the API processes (and their workers) to half the cores and the rest here to the others.

    None (nothing moved) where affinity cannot be set (not Linux) or there is only one core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    split = split_cpus(os.sched_getaffinity(0))
    if split is None:
        return None
    placement = Placement(*split)
    apis = [p for pid in api_pids for p in (pid, *children_of(pid))]
    _pin(placement, apis, placement.api_cpus)
    # This process (and so every generator it starts from now on) and the dev servers.
    _pin(placement, [os.getpid(), *pids_named(DEV_SERVER_NAMES)], placement.other_cpus)
    return placement
