"""Dead-letter records, filters and the `streamrec dead-letter` option checks (no Kafka needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

import cli.dead_letter  # noqa: F401  (registers the commands)
from cli.app import app
from cli.dead_letter import _shown, parse_since
from core.errors import ConfigError
from storage.dead_letters import DeadLetterRecord, record_from_message, replay_headers, select

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def headers(code: str, at: datetime, offset: int = 5) -> list[tuple[str, bytes]]:
    return [
        ("reason", b"timestamp is more than 1 day in the future"),
        ("error_code", code.encode()),
        ("source_topic", b"streamrec.events"),
        ("source_partition", b"2"),
        ("source_offset", str(offset).encode()),
        ("failed_at", at.isoformat().encode()),
    ]


def record(code: str, minutes: int, offset: int = 0) -> DeadLetterRecord:
    return record_from_message(0, offset, b"u1", b"{}", headers(code, T0 + timedelta(minutes=minutes)))


def test_headers_written_by_the_consumer_are_read_back() -> None:
    r = record_from_message(3, 17, b"u1", b'{"a":1}', headers("future_timestamp", T0, offset=9), 123)
    assert (r.partition, r.offset, r.address) == (3, 17, "3:17")
    assert (r.code, r.source_topic, r.source_partition, r.source_offset) == (
        "future_timestamp",
        "streamrec.events",
        2,
        9,
    )
    assert r.source == "streamrec.events:2:9" and r.failed_at == T0 and r.reason.startswith("timestamp")


def test_missing_or_garbled_headers_do_not_break_reading() -> None:
    r = record_from_message(0, 1, None, None, [("source_partition", b"two"), ("failed_at", b"yesterday")], 0)
    assert r.code == "unknown" and r.source_topic is None and r.source == "-"
    assert r.source_partition is None and r.failed_at is None
    # Without a failed_at header the Kafka timestamp is the failure time; a dict of str headers works too.
    r = record_from_message(0, 1, None, None, {"error_code": "bad_json"}, 1_700_000_000_000)
    assert r.code == "bad_json" and r.failed_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_select_filters_by_code_and_time_oldest_first_with_a_limit() -> None:
    records = [record("bad_json", 30, 1), record("future_timestamp", 10, 2), record("bad_json", 20, 3)]
    assert [r.offset for r in select(records)] == [2, 3, 1]
    assert [r.offset for r in select(records, code="bad_json")] == [3, 1]
    assert [r.offset for r in select(records, since=T0 + timedelta(minutes=15))] == [3, 1]
    assert [r.offset for r in select(records, code="bad_json", limit=1)] == [3]
    undated = record_from_message(0, 9, None, None, [("error_code", b"bad_json")])
    assert select([undated], since=T0) == [] and select([undated]) == [undated]


def test_replayed_records_carry_where_they_came_from() -> None:
    assert replay_headers("dl", record("bad_json", 0, offset=4)) == [
        ("replayed_from", b"dl:0:4"),
        ("replayed_code", b"bad_json"),
    ]


def test_since_takes_an_iso_time_or_a_duration_ago() -> None:
    assert parse_since(None) is None
    assert parse_since("2026-03-01T12:00:00Z") == T0
    assert parse_since("2026-03-01T12:00:00") == T0, "no offset means UTC"
    assert parse_since("2h", now=T0) == T0 - timedelta(hours=2)
    with pytest.raises(ConfigError, match="neither an ISO-8601 time"):
        parse_since("last tuesday")


def test_shown_values_cannot_rewrite_the_terminal() -> None:
    assert _shown(b"a\nb\x1b[31mc\x00", 40) == "a\\x0ab\\x1b[31mc\\x00"
    assert _shown(b"\xff", 10) == "\\xff" and _shown(None, 5) == "-"
    assert _shown(b"x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--since", "soon"], "--since 'soon'"),
        (["replay", "--since", "-2h"], "--since '-2h'"),
        (["list", "--code", "Bad Json"], "is not a reason code"),
        (["replay", "--limit", "0"], "--limit must be 1 or more"),
        (["list", "--wait", "0"], "--wait must be between"),
    ],
)
def test_invalid_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["dead-letter", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
