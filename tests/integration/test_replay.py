"""`streamrec replay csv` against a real broker: every valid row arrives once per replay, keyed by
user, in time order per partition, with the same event ids on every replay."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Message
from typer.testing import CliRunner

from cli.app import app
from core.events import InteractionEvent, parse_interaction
from core.settings import Settings
from storage.kafka import make_consumer, wait_for_assignment
from tooling.devstack.processes import settings_env

ROWS = 40
BAD_ROWS = 2


def _write_csv(path: Path) -> None:
    lines = ["user_id,item_id,event_type,timestamp,session_id,value"]
    base_ms = 1_700_000_000_000
    for n in range(ROWS):
        # Written newest first: replay must reorder by time.
        ts = base_ms + (ROWS - n) * 1000
        stamp = str(ts) if n % 2 else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + "Z"
        kind, value = ("rate", "4") if n % 5 == 0 else ("view", "")
        lines.append(f"u{n % 4},i{n % 7},{kind},{stamp},s{n % 3},{value}")
    lines.append("u1,i1,teleport,1700000000000,,")
    lines.append("u1,i1,rate,1700000000000,,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _read(settings: Settings, want: int, timeout_s: float = 40.0) -> list[Message]:
    consumer = make_consumer(settings.kafka, group_id=f"{settings.kafka.group_id}-reader")
    consumer.subscribe([settings.kafka.topics.events])
    got: list[Message] = []
    try:
        wait_for_assignment(consumer)
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
        # A short quiet period: more than `want` would mean duplicates from the producer.
        quiet_until = time.monotonic() + 1.5
        while time.monotonic() < quiet_until:
            got.extend(m for m in consumer.consume(500, 0.3) if m.error() is None)
    finally:
        consumer.close()
    return got


def test_replaying_a_csv_twice_gives_identical_ids(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "events.csv"
    _write_csv(source)
    runner = CliRunner()
    import tooling.producers.replay  # noqa: F401  (registers the command)

    env = settings_env(settings)
    outputs = []
    for _ in range(2):
        result = runner.invoke(app, ["replay", "csv", "--path", str(source)], env=env)
        assert result.exit_code == 0, result.output + repr(result.exception)
        outputs.append(result.output)
    assert f"{BAD_ROWS} rejected" in outputs[0]
    assert "line 42" in outputs[0] and "teleport" in outputs[0]

    messages = _read(settings, 2 * ROWS)
    assert len(messages) == 2 * ROWS
    events: list[InteractionEvent] = []
    for msg in messages:
        parsed = parse_interaction(msg.value() or b"")
        assert isinstance(parsed, InteractionEvent), parsed
        assert msg.key() == parsed.user_id.encode()
        events.append(parsed)
    per_id = Counter(e.event_id for e in events)
    assert len(per_id) == ROWS and set(per_id.values()) == {2}

    # Within each partition each replay's events come in timestamp order.
    by_partition: dict[int, list[InteractionEvent]] = {}
    for msg, event in zip(messages, events, strict=True):
        by_partition.setdefault(msg.partition() or 0, []).append(event)
    for part in by_partition.values():
        half = len(part) // 2
        for run in (part[:half], part[half:]):
            assert [e.ts_ms for e in run] == sorted(e.ts_ms for e in run)
