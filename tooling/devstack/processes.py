"""Start and stop streamrec role processes and the dev stack for benchmarks and demos.

Everything here stops only what it started: ``ensure_devstack`` hands back a handle whose ``stop``
is a no-op when the servers were already up, and ``ManagedProcess`` signals only its own child.
Children get their whole configuration as ``STREAMREC_*`` environment variables
(``settings_env``), so a benchmark's scratch topics, database and key prefix reach them exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, SecretStr

from core.errors import DependencyUnavailable, StreamrecError
from core.settings import KafkaTopics, Settings
from tooling.settings import ToolingSettings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Helpers that return a changed copy keep the caller's class (the product's Settings or ToolingSettings).
S = TypeVar("S", bound=Settings)
ENV_PREFIX = "STREAMREC_"


# ---------------------------------------------------------------- settings → environment


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple | dict):
        plain = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in value]
        return orjson.dumps(value if isinstance(value, dict) else plain, default=str).decode()
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every field of ``settings`` as the STREAMREC_* variable that reproduces it in a child process."""
    env: dict[str, str] = {}

    def walk(model: BaseModel, path: list[str]) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, [*path, name])
                continue
            text = _env_value(value)
            if text is not None:
                env[ENV_PREFIX + "__".join([*path, name]).upper()] = text

    walk(settings, [])
    return env


def child_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without its STREAMREC_* variables, plus those of ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# ---------------------------------------------------------------- managed child processes


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a live process has used (Linux /proc; psutil elsewhere), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _clock_ticks()
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except Exception:
        return None


@dataclass
class ManagedProcess:
    """A `streamrec` child process we started, with its output in ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.pid) if self.alive() else None

    def kill(self) -> None:
        """SIGKILL: the crash a benchmark simulates (no cleanup, no commit)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "event=child_kill name=%s pid=%d reason=no_exit_after_sigterm", self.name, self.pid
                )
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(
        self, ready: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1
    ) -> float:
        """Poll ``ready`` until true; returns seconds waited. Raises if the child dies or time runs out."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if not self.alive():
                raise StreamrecError(
                    f"{self.name} exited with code {self.popen.returncode} before {what}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return time.monotonic() - start
            time.sleep(interval_s)
        raise DependencyUnavailable(
            f"{self.name} did not reach '{what}' within {timeout_s:.0f}s; see {self.log_path}"
        )


def start_streamrec(
    args: list[str],
    settings: Settings,
    *,
    name: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Run ``streamrec ARGS`` (this interpreter, this checkout) with ``settings`` in its environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000}.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO_ROOT,
            env=child_env(settings, extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    log.info("event=child_started name=%s pid=%d log=%s", name, popen.pid, log_path)
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_consumer(
    settings: Settings, *, log_dir: Path, name: str = "consumer", ready_timeout_s: float = 60.0
) -> ManagedProcess:
    """`streamrec consume`; returns once its metrics endpoint answers (or at once if metrics are off).

    Answering metrics means the process is up, not that its group has partitions: callers that need
    "consuming" wait for an effect (a warm-up event stored), as the benchmarks do.
    """
    proc = start_streamrec(["consume"], settings, name=name, log_dir=log_dir)
    port = settings.consumer.metrics_port
    if port:
        proc.wait_until(lambda: _port_open("127.0.0.1", port), ready_timeout_s, "metrics endpoint up")
    return proc


def start_server(
    settings: Settings,
    *,
    log_dir: Path,
    name: str = "serve",
    health_path: str = "/healthz",
    ready_timeout_s: float = 90.0,
) -> ManagedProcess:
    """`streamrec serve`; returns once ``GET health_path`` answers below 500."""
    import httpx

    host, port = settings.serving.host, settings.serving.port
    proc = start_streamrec(["serve"], settings, name=name, log_dir=log_dir)

    def ready() -> bool:
        try:
            return httpx.get(f"http://{host}:{port}{health_path}", timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    proc.wait_until(ready, ready_timeout_s, f"GET {health_path} answers", interval_s=0.25)
    return proc


@contextlib.contextmanager
def running(proc: ManagedProcess) -> Iterator[ManagedProcess]:
    """Stop the process however the block ends."""
    try:
        yield proc
    finally:
        proc.stop()


# ---------------------------------------------------------------- the dev stack


@dataclass
class DevStack:
    """The servers a command talks to; ``stop`` stops them only if ``ensure_devstack`` started them."""

    settings: ToolingSettings
    started: bool
    state: Any = None  # tooling.devstack.servers.StackState when started here

    def stop(self) -> None:
        if not self.started or self.state is None:
            return
        from tooling.devstack.servers import stop_stack

        gone = stop_stack(self.state)
        left = [name for name, ok in gone.items() if not ok]
        if left:
            log.warning("event=devstack_stop_incomplete servers=%s", ",".join(left))
        self.started = False


def _servers_answer(settings: Settings) -> dict[str, bool]:
    from tooling.devstack.servers import probe_url

    return {
        "kafka": probe_url("kafka", settings.kafka.bootstrap),
        "mongo": probe_url("mongo", settings.mongo.uri.get_secret_value()),
        "redis": probe_url("redis", settings.redis.url.get_secret_value()),
    }


def with_stack_urls(settings: S, state: Any) -> S:
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": state.kafka_bootstrap}),
            "mongo": settings.mongo.model_copy(update={"uri": SecretStr(state.mongo_uri)}),
            "redis": settings.redis.model_copy(update={"url": SecretStr(state.redis_url)}),
        }
    )


def ensure_devstack(settings: ToolingSettings, timeout_s: float = 60.0) -> DevStack:
    """Use the configured servers if all three answer; otherwise start the dev stack (and own it)."""
    from tooling.devstack.servers import load_state, probe, remove_state, start_stack, stop_stack

    answers = _servers_answer(settings)
    if all(answers.values()):
        return DevStack(settings=settings, started=False)
    base = settings.devstack.dir if settings.devstack.dir.is_absolute() else REPO_ROOT / settings.devstack.dir
    state = load_state(base)
    if state is not None:
        if all(probe(state).values()):
            return DevStack(settings=with_stack_urls(settings, state), started=False)
        # A stale record of a stack that died: clear what is left before starting afresh.
        stop_stack(state)
        remove_state(base)
    down = ", ".join(name for name, ok in answers.items() if not ok)
    log.info("event=devstack_starting reason=not_answering servers=%s dir=%s", down, base)
    ds = settings.devstack
    state = start_stack(base, ds.kafka_port, ds.mongo_port, ds.redis_port, timeout_s=timeout_s)
    return DevStack(settings=with_stack_urls(settings, state), started=True, state=state)


# ---------------------------------------------------------------- scratch namespaces for benchmarks


def scratch_settings(settings: S, label: str) -> S:
    """Settings with topics, group id, database, key prefix and metrics port unique to one run."""
    run = f"{label}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    kafka = settings.kafka.model_copy(
        update={
            "topics": KafkaTopics(
                events=f"bench.{run}.events",
                items=f"bench.{run}.items",
                dead_letter=f"bench.{run}.dead-letter",
                impressions=f"bench.{run}.impressions",
            ),
            "group_id": f"bench-{run}",
        }
    )
    return settings.model_copy(
        update={
            "kafka": kafka,
            "mongo": settings.mongo.model_copy(update={"database": f"bench_{run.replace('-', '_')}"}),
            "redis": settings.redis.model_copy(update={"key_prefix": f"bench:{run}:"}),
            "consumer": settings.consumer.model_copy(update={"metrics_port": free_port()}),
        }
    )


def drop_scratch(
    settings: Settings, *, databases: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()
) -> None:
    """Delete a run's scratch database(s), Redis keys and topics; best effort, logs what it could not."""
    import pymongo
    import redis
    from confluent_kafka.admin import AdminClient

    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=settings.mongo.timeout_ms
        )
        try:
            for name in (settings.mongo.database, *databases):
                client.drop_database(name)
        finally:
            client.close()
    except pymongo.errors.PyMongoError as exc:
        log.warning("event=scratch_drop_failed what=mongo error=%s", exc)
    try:
        from storage.redis_clients import make_redis

        # A cluster client when STREAMREC_REDIS__CLUSTER is set: it scans every primary and splits
        # the deletes by slot.
        conn = make_redis(settings.redis)
        try:
            for prefix in (settings.redis.key_prefix, *prefixes):
                batch: list[Any] = []
                for key in conn.scan_iter(match=f"{prefix}*", count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        conn.delete(*batch)
                        batch = []
                if batch:
                    conn.delete(*batch)
        finally:
            conn.close()
    except redis.RedisError as exc:
        log.warning("event=scratch_drop_failed what=redis error=%s", exc)
    topics = settings.kafka.topics
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap, "log_level": 4})
    for name, future in admin.delete_topics(
        [topics.events, topics.items, topics.dead_letter, topics.impressions]
    ).items():
        try:
            future.result(timeout=10)
        except Exception as exc:  # a leftover uniquely named topic harms nothing
            log.info("event=scratch_topic_not_deleted topic=%s error=%s", name, exc)


def create_topics(settings: Settings, partitions: int = 4, timeout_s: float = 30.0) -> None:
    """Create the run's topics before any client subscribes.

    A consumer that subscribes to a topic which does not exist yet only notices it at its next
    metadata refresh (minutes by default), so benchmarks create their topics first, as production does.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    topics = settings.kafka.topics
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap, "log_level": 4})
    # Impressions are keyed by shopper like events, so they get the same partition count.
    wanted = [
        NewTopic(t, num_partitions=partitions, replication_factor=1)
        for t in (topics.events, topics.items, topics.impressions)
    ]
    wanted.append(NewTopic(topics.dead_letter, num_partitions=1, replication_factor=1))
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise DependencyUnavailable(f"cannot create Kafka topic {name}: {exc}") from exc
