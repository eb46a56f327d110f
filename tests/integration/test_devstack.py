"""`streamrec devstack up|status|down` end to end, as a user runs it (a subprocess of the console script)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tooling.devstack.probes import free_port
from tooling.devstack.servers import load_state, stop_stack

STREAMREC = Path(sys.executable).parent / "streamrec"
COMMAND = [str(STREAMREC)] if STREAMREC.exists() else [sys.executable, "-m", "cli.main"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "devstack", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _state(dev_dir: Path) -> dict[str, dict[str, object]]:
    servers: dict[str, dict[str, object]] = json.loads((dev_dir / "state.json").read_text())["servers"]
    return servers


def _pids(dev_dir: Path) -> dict[str, int]:
    return {name: int(str(s["pid"])) for name, s in _state(dev_dir).items()}


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a private dev stack in tmp_path on free ports; whatever it started is stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env |= {
        "STREAMREC_DEVSTACK__DIR": str(tmp_path / "stack"),
        "STREAMREC_DEVSTACK__KAFKA_PORT": str(free_port()),
        "STREAMREC_DEVSTACK__MONGO_PORT": str(free_port()),
        "STREAMREC_DEVSTACK__REDIS_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    yield env
    state = load_state(tmp_path / "stack")
    if state is not None:
        stop_stack(state)


def test_up_status_down_lifecycle(dev_env: dict[str, str], tmp_path: Path) -> None:
    dev_dir = tmp_path / "stack"
    ports = {n: dev_env[f"STREAMREC_DEVSTACK__{n.upper()}_PORT"] for n in ("kafka", "mongo", "redis")}

    up = _run(dev_env, tmp_path, "up")
    assert up.returncode == 0, up.stderr
    pids = _pids(dev_dir)
    assert set(pids) == {"kafka", "mongo", "redis"}
    assert all(_alive(pid) for pid in pids.values())
    env_file = (dev_dir / "stack.env").read_text()
    assert f"STREAMREC_KAFKA__BOOTSTRAP=127.0.0.1:{ports['kafka']}\n" in env_file
    assert f"STREAMREC_MONGO__URI=mongodb://127.0.0.1:{ports['mongo']}\n" in env_file
    assert f"STREAMREC_REDIS__URL=redis://127.0.0.1:{ports['redis']}/0\n" in env_file
    assert all(Path(str(s["log_path"])).is_file() for s in _state(dev_dir).values())

    again = _run(dev_env, tmp_path, "up")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert _pids(dev_dir) == pids, "a second up starts nothing new"

    status = _run(dev_env, tmp_path, "status")
    assert status.returncode == 0, status.stdout
    for port in ports.values():
        assert f"127.0.0.1:{port}" in status.stdout
    assert status.stdout.count("yes") == 3

    # A server that died: status says so and what it loses, up restarts only it.
    os.kill(pids["redis"], signal.SIGKILL)
    status = _run(dev_env, tmp_path, "status")
    assert status.returncode == 1
    assert "redis is down" in status.stdout and "rebuild-cache" in status.stdout
    restarted = _run(dev_env, tmp_path, "up")
    assert restarted.returncode == 0, restarted.stderr
    assert "redis restarted" in restarted.stdout and "rebuild-cache" in restarted.stdout
    new_pids = _pids(dev_dir)
    assert new_pids["redis"] != pids["redis"]
    assert (new_pids["kafka"], new_pids["mongo"]) == (pids["kafka"], pids["mongo"])
    after = _run(dev_env, tmp_path, "status")
    assert after.returncode == 0 and "redis was restarted" in after.stdout

    down = _run(dev_env, tmp_path, "down")
    assert down.returncode == 0, down.stderr
    still_running = [pid for pid in {*pids.values(), *new_pids.values()} if _alive(pid)]
    assert still_running == []
    assert not (dev_dir / "state.json").exists()
    assert not (dev_dir / "stack.env").exists()
    assert (dev_dir / "data" / "mongo").is_dir(), "down keeps data unless --wipe"
    assert _run(dev_env, tmp_path, "status").returncode == 1

    wiped = _run(dev_env, tmp_path, "down", "--wipe")
    assert wiped.returncode == 0, wiped.stderr
    assert not (dev_dir / "data").exists()


def test_up_restarts_only_the_dead_server_and_the_others_keep_their_data(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from pymongo import MongoClient

    dev_dir = tmp_path / "stack"
    assert _run(dev_env, tmp_path, "up").returncode == 0
    pids = _pids(dev_dir)
    urls = {name: str(s["url"]) for name, s in _state(dev_dir).items()}
    producer = Producer({"bootstrap.servers": urls["kafka"]})
    producer.produce("kept", key=b"k", value=b"unconsumed event")
    assert producer.flush(30) == 0
    client: Any
    with MongoClient(urls["mongo"], serverSelectionTimeoutMS=5000) as client:
        client["keep"]["docs"].insert_one({"_id": "d1"})

    os.kill(pids["kafka"], signal.SIGKILL)
    up = _run(dev_env, tmp_path, "up")
    assert up.returncode == 0, up.stderr
    assert "kafka restarted" in up.stdout and "unconsumed events" in up.stdout
    assert "redis restarted" not in up.stdout and "mongo restarted" not in up.stdout
    new_pids = _pids(dev_dir)
    assert new_pids["kafka"] != pids["kafka"]
    assert (new_pids["mongo"], new_pids["redis"]) == (pids["mongo"], pids["redis"])
    with MongoClient(urls["mongo"], serverSelectionTimeoutMS=5000) as client:
        assert client["keep"]["docs"].find_one({"_id": "d1"}) == {"_id": "d1"}, "mongo kept its data"
    status = _run(dev_env, tmp_path, "status")
    assert status.returncode == 0 and "kafka was restarted" in status.stdout

    # Redis keeps its keys across an `up` that restarts something else.
    import redis

    r = redis.Redis.from_url(urls["redis"])
    r.set("kept", "1")
    os.kill(new_pids["mongo"], signal.SIGKILL)
    up = _run(dev_env, tmp_path, "up")
    assert up.returncode == 0, up.stderr
    assert "mongo restarted" in up.stdout and _pids(dev_dir)["redis"] == pids["redis"]
    assert r.get("kept") == b"1"
    with MongoClient(urls["mongo"], serverSelectionTimeoutMS=5000) as client:
        assert client["keep"]["docs"].find_one({"_id": "d1"}) == {"_id": "d1"}, "on disk, so kept"
    r.close()
    # The restarted broker serves again (its old topic is gone; it is what "lost" means here).
    producer = Producer({"bootstrap.servers": urls["kafka"]})
    producer.produce("after", value=b"x", partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": urls["kafka"], "group.id": "check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("after", 0, OFFSET_BEGINNING)])
    try:
        values = []
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
                break
    finally:
        consumer.close()
    assert values == [b"x"]


def test_missing_redis_server_is_one_line(dev_env: dict[str, str], tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = _run(dev_env | {"PATH": str(empty_bin)}, tmp_path, "up")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: redis-server not found: apt-get install redis-server"
    ]
    assert not (tmp_path / "stack" / "state.json").exists(), "nothing starts when a tool is missing"


def test_port_taken_by_another_process_is_one_line(dev_env: dict[str, str], tmp_path: Path) -> None:
    kafka_port = int(dev_env["STREAMREC_DEVSTACK__KAFKA_PORT"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", kafka_port))
        squatter.listen()
        result = _run(dev_env, tmp_path, "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {kafka_port}" in lines[0]
    assert "STREAMREC_DEVSTACK__KAFKA_PORT" in lines[0]
    assert not (tmp_path / "stack" / "state.json").exists()
