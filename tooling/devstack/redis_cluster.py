"""A throw-away Redis Cluster of ``redis-server`` processes on loopback (tests, trying the cluster mode).

Each node is a dev-stack Redis (``tooling.devstack.servers``: no persistence, own process session,
own data and log directory) started with ``cluster-enabled yes`` and its own ``cluster-config-file``;
``redis-cli --cluster create`` then assigns the 16384 slots to the primaries (no replicas), and we
wait until every node reports ``cluster_state:ok``. Point streamrec at it with
``STREAMREC_REDIS__URL=<url>`` and ``STREAMREC_REDIS__CLUSTER=true``.
"""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import DependencyUnavailable
from tooling.devstack.probes import port_is_free
from tooling.devstack.servers import ServerProcess, start_server, stop_server
from tooling.settings import MissingTool

log = logging.getLogger(__name__)

# How long a node waits before it calls a silent peer failed; short, since nodes here never move.
NODE_TIMEOUT_MS = 5000
BUS_OFFSET = 10000


@dataclass
class RedisClusterProcesses:
    nodes: list[ServerProcess]

    @property
    def url(self) -> str:
        """Any one node: the cluster client discovers the others from it."""
        return self.nodes[0].url


def find_redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found:
        return found
    raise MissingTool("redis-cli not found: apt-get install redis-tools (it comes with redis-server)")


def free_cluster_ports(n: int, low: int = 20000, high: int = 55535) -> list[int]:
    """``n`` ports that are free together with their cluster bus ports (port + 10000, which is why a
    node's port cannot exceed 55535), picked at random so parallel runs rarely collide."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randint(low, high)
        taken = {*ports, *(p + BUS_OFFSET for p in ports)}
        if {port, port + BUS_OFFSET} & taken:
            continue
        if port_is_free(port) and port_is_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def node_args(port: int) -> list[str]:
    return [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        f"nodes-{port}.conf",
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
    ]


def start_redis_cluster(
    base_dir: Path, ports: Sequence[int], timeout_s: float = 60.0
) -> RedisClusterProcesses:
    """Start one primary per port, create the cluster and wait until it serves every slot; on any
    failure the nodes started so far are stopped again."""
    cli = find_redis_cli()
    cluster = RedisClusterProcesses([])
    try:
        for port in ports:
            # The data dir is the node's cwd: its cluster-config-file lands there, one per node.
            node = start_server(
                "redis", base_dir / f"node-{port}", port, timeout_s, extra_args=node_args(port)
            )
            cluster.nodes.append(node)
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        out = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if out.returncode != 0:
            raise DependencyUnavailable(
                f"redis-cli --cluster create failed: {(out.stdout + out.stderr)[-500:]}"
            )
        wait_cluster_ok(cluster, timeout_s)
    except BaseException:
        stop_redis_cluster(cluster)
        raise
    log.info("event=redis_cluster_started ports=%s", ",".join(map(str, ports)))
    return cluster


def wait_cluster_ok(cluster: RedisClusterProcesses, timeout_s: float) -> None:
    """Every node says ``cluster_state:ok`` (all slots covered, the nodes agree)."""
    import redis

    deadline = time.monotonic() + timeout_s
    pending = list(cluster.nodes)
    while pending:
        node = pending[0]
        conn = redis.Redis.from_url(node.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            info = conn.execute_command("CLUSTER INFO")
        except redis.RedisError:
            info = b""
        finally:
            conn.close()
        # redis-py parses the reply into a dict; older versions hand back the raw text.
        ok = info.get("cluster_state") == "ok" if isinstance(info, dict) else b"cluster_state:ok" in info
        text = str(info)
        if ok:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise DependencyUnavailable(
                f"Redis Cluster node {node.url} not ok within {timeout_s:.0f}s: {text[:200]}"
            )
        time.sleep(0.2)


def stop_redis_cluster(cluster: RedisClusterProcesses) -> None:
    for node in cluster.nodes:
        stop_server(node)
