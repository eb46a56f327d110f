"""Background traffic for `streamrec bench freshness`: valid interaction events of other shoppers,
produced to the events topic at a fixed rate by a separate process until it is told to stop.

A separate process, not a thread: a producer thread in the sampler's interpreter would compete with
the sampler for the GIL and delay its timestamps, so the load would distort what it loads. The child
produces the way `streamrec simulate --rate` does (``produce_all`` with the CLI's producer settings,
paced by ``Pacer``) with the run's settings passed in its environment, and reports how many events
Kafka acknowledged over how long, so the report states the rate achieved rather than the rate asked.

Protocol on the child's stdout: ``READY`` once the broker answered, then at the end one line
``RESULT {json}`` (or ``ERROR message`` when Kafka refused). SIGTERM ends the load; so does
``max_s`` (a parent that died leaves no orphan producing forever).
"""

from __future__ import annotations

import argparse
import random
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson
from confluent_kafka import KafkaException

from core.errors import StreamrecError
from core.events import EventType, InteractionEvent
from core.settings import Settings

Record = tuple[bytes, bytes]

USER_PREFIX = "bg-"
# Roughly a storefront's funnel: many views, fewer clicks, few carts and purchases.
EVENT_MIX: tuple[tuple[EventType, float], ...] = (
    (EventType.VIEW, 0.6),
    (EventType.CLICK, 0.3),
    (EventType.ADD_TO_CART, 0.07),
    (EventType.PURCHASE, 0.03),
)


def background_events(
    item_ids: Sequence[str], users: int, seed: int, stop: threading.Event
) -> Iterator[Record]:
    """Events of shoppers ``bg-0 .. bg-<users-1>`` on ``item_ids``, stamped now, until ``stop``."""
    rng = random.Random(seed)
    kinds = [k for k, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    n = 0
    while not stop.is_set():
        user = f"{USER_PREFIX}{rng.randrange(users)}"
        event = InteractionEvent(
            event_id=f"{USER_PREFIX}{seed}-{n}",
            event_type=rng.choices(kinds, weights)[0],
            user_id=user,
            item_id=item_ids[rng.randrange(len(item_ids))],
            timestamp=datetime.now(UTC),
        )
        yield user.encode("utf-8"), event.to_json()
        n += 1


def main(argv: Sequence[str] | None = None) -> None:
    """The child process: produce until SIGTERM or ``--max-s``, then print the delivery figures."""
    from cli.context import load_settings
    from tooling.producers.produce import make_cli_producer, produce_all

    parser = argparse.ArgumentParser(prog="background_load")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--items-file", type=Path, required=True)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-s", type=float, required=True)
    args = parser.parse_args(argv)

    settings = load_settings()
    item_ids = args.items_file.read_text(encoding="utf-8").split()
    stop, terminated = threading.Event(), threading.Event()

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        terminated.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    timer = threading.Timer(args.max_s, stop.set)
    timer.daemon = True
    timer.start()
    topic = settings.kafka.topics.events
    try:
        producer = make_cli_producer(settings)
        producer.list_topics(topic, timeout=30)  # raises when the broker does not answer
        _say("READY")
        events = background_events(item_ids, args.users, args.seed, stop)
        stats = produce_all(
            producer, topic, events, total=None, description="background events", rate=args.rate
        )
    except (StreamrecError, KafkaException) as exc:
        _say(f"ERROR {exc}")
        raise SystemExit(1) from None
    timer.cancel()
    result = {
        "acked": stats.acked,
        "failed": stats.failed,
        "elapsed_s": round(stats.elapsed_s, 3),
        "events_per_s": round(stats.acked / stats.elapsed_s, 1) if stats.elapsed_s > 0 else 0.0,
        "rate_asked": args.rate,
        "stopped_by_max_s": not terminated.is_set(),
    }
    _say("RESULT " + orjson.dumps(result).decode())


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class BackgroundLoad:
    """The parent's handle on the child: start it, wait until it produces, stop it, read its figures."""

    def __init__(
        self,
        settings: Settings,
        *,
        rate: float,
        item_ids: Sequence[str],
        log_dir: Path,
        max_s: float,
        seed: int = 0,
    ) -> None:
        from tooling.devstack.processes import REPO_ROOT, child_env

        log_dir.mkdir(parents=True, exist_ok=True)
        items_file = log_dir / "background-items.txt"
        items_file.write_text("\n".join(item_ids) + "\n", encoding="utf-8")
        self.log_path = log_dir / "background-load.log"
        cmd = [
            sys.executable, "-m", "tooling.bench.background_load", "--rate", str(rate),
            "--items-file", str(items_file), "--seed", str(seed), "--max-s", str(max_s),
        ]  # fmt: skip
        with open(self.log_path, "wb") as err:
            self.popen = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=child_env(settings),
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    def _stdout(self) -> IO[bytes]:
        assert self.popen.stdout is not None
        return self.popen.stdout

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        ready, _, _ = select.select([self._stdout()], [], [], timeout_s)
        line = self._stdout().readline() if ready else b""
        if line.strip() != b"READY":
            self.kill()
            raise StreamrecError(f"the background load did not start; log {self.log_path}:\n{self._tail()}")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM, then the child's figures (it flushes what it queued before answering)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            out, _ = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise StreamrecError(f"the background load did not stop; log {self.log_path}") from None
        lines = out.decode(errors="replace").splitlines()
        line = next((ln for ln in lines if ln.startswith("RESULT ")), None)
        if line is None:
            error = next((ln.removeprefix("ERROR ") for ln in lines if ln.startswith("ERROR ")), None)
            raise StreamrecError(
                f"the background load failed: {error}"
                if error
                else f"the background load exited ({self.popen.returncode}) without figures; "
                f"log {self.log_path}:\n{self._tail()}"
            )
        return dict(orjson.loads(line.removeprefix("RESULT ")))

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


if __name__ == "__main__":
    main()
