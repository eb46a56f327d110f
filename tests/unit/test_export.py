"""`streamrec export recommendations`: the user list, resuming, and the in-process read side."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cli.export_run import export_settings, run_export
from core.export_file import ExportInputError, parse_users, read_users, resume_output
from serving.ports import InMemoryProducer
from storage.event_store_memory import InMemoryEventStore
from storage.experiments import InMemoryExperimentStore
from storage.impression_log import InMemoryImpressionLog
from storage.model_registry_memory import InMemoryModelRegistry
from storage.realtime_reader_twin import InMemoryRealtimeReader
from storage.retrain_requests import InMemoryRetrainRequests
from tests.unit.test_serving_helpers import Harness, catalog, category_of, make_settings


def test_parse_users_skips_blanks_comments_repeats_and_reports_bad_lines() -> None:
    lines = [b"alice\n", b"\n", b"# campaign 7\n", b"  bob  \n", b"alice\n", b"bad\x01id\n", b"\xff\xfe\n"]
    users, bad = parse_users([*lines, b"x" * 257 + b"\n"])
    assert users == ["alice", "bob"]
    assert [n for n, _ in bad] == [6, 7, 8]
    assert "control character" in bad[0][1] and "UTF-8" in bad[1][1] and "256" in bad[2][1]


def test_read_users_names_the_bad_lines_and_refuses(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_bytes(b"alice\n" + b"\x00\n" * 25)
    with pytest.raises(ExportInputError, match=r"25 bad line\(s\).*line 2: .*line 21: .*and 5 more"):
        read_users(path)
    with pytest.raises(ExportInputError, match="cannot read the user list"):
        read_users(tmp_path / "missing.txt")


def test_resume_reads_done_users_and_repairs_a_cut_short_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert resume_output(out).done == set()
    out.write_bytes(b'{"user_id":"a","items":[]}\n{"user_id":"b","items":[]}\n{"user_id":"c","it')
    resume = resume_output(out)
    assert (
        resume.done == {"a", "b"}
        and resume.lines == 2
        and resume.repaired_bytes == len(b'{"user_id":"c","it')
    )
    assert out.read_bytes().endswith(b'"b","items":[]}\n')
    assert resume_output(out).repaired_bytes == 0  # repaired once, stays repaired


def test_resume_refuses_a_file_that_is_not_an_export(tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    out.write_bytes(b'{"user_id":"a"}\nhello\n')
    with pytest.raises(ExportInputError, match="line 2 is not an export line"):
        resume_output(out)
    assert out.read_bytes() == b'{"user_id":"a"}\nhello\n'  # untouched


def test_export_settings_turn_off_impressions_and_the_cache_only() -> None:
    settings = make_settings()
    local = export_settings(settings)
    assert local.serving.impressions.enabled is False and local.serving.cache_ttl_s == 0
    assert settings.serving.impressions.enabled is True and settings.serving.cache_ttl_s > 0
    assert local.serving.max_k == settings.serving.max_k and local.redis == settings.redis


def twins() -> Harness:
    h = Harness(
        client=None,  # type: ignore[arg-type]
        registry=InMemoryModelRegistry(),
        realtime=InMemoryRealtimeReader(),
        events=InMemoryEventStore(),
        producer=InMemoryProducer(),
        retrain=InMemoryRetrainRequests(),
        settings=make_settings(),
        impression_log=InMemoryImpressionLog(),
        experiments=InMemoryExperimentStore(),
    )
    catalog(h.realtime)
    h.publish()
    return h


def run(h: Harness, out: Path, users: list[str] | None, **kw: object) -> object:
    return asyncio.run(run_export(h.settings, out, k=3, users=users, adapters=h.adapters(), **kw))  # type: ignore[arg-type]


def test_export_answers_like_the_api_and_resumes(tmp_path: Path) -> None:
    h = twins()
    out = tmp_path / "recs.jsonl"
    h.realtime.record("bob", "tools-1", "purchase")  # bob's purchase is excluded, as in the API
    stats = run(h, out, ["alice", "bob", "carol"])
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert sorted(x["user_id"] for x in lines) == ["alice", "bob", "carol"]
    by_user = {x["user_id"]: x for x in lines}
    assert set(by_user["alice"]) == {"user_id", "items", "model_version", "request_id"}
    assert len(by_user["alice"]["items"]) == 3 and by_user["alice"]["model_version"] == "1"
    assert all(category_of(i["item_id"]) == "books" for i in by_user["alice"]["items"])
    assert "tools-1" not in [i["item_id"] for i in by_user["bob"]["items"]]
    assert by_user["carol"]["items"][0]["reason"] == {"kind": "popular"}
    assert by_user["alice"]["request_id"].startswith("export-")
    assert h.impression_log is not None and h.impression_log.records == []  # no impressions
    assert h.realtime.cache == {}  # no cache entries
    assert stats.exported == 3 and stats.already_done == 0  # type: ignore[attr-defined]
    # Interrupted mid-line: the next run repairs the line and exports only what is missing.
    data = out.read_bytes()
    last_line = len(data) - data.rstrip(b"\n").rfind(b"\n") - 1
    out.write_bytes(data[:-10])
    again = run(h, out, ["alice", "bob", "carol", "dave"])
    assert again.exported == 2 and again.already_done == 2  # type: ignore[attr-defined]
    assert again.repaired_bytes == last_line - 10  # type: ignore[attr-defined]
    users = [orjson.loads(x)["user_id"] for x in out.read_bytes().splitlines()]
    assert sorted(users) == ["alice", "bob", "carol", "dave"] and len(users) == 4


def test_export_all_takes_users_with_stored_events_minus_erased(tmp_path: Path) -> None:
    h = twins()
    ts = datetime.now(UTC)
    h.events.insert_events(
        [
            {"_id": f"e{n}", "user_id": u, "item_id": "books-1", "event_type": "click", "ts": ts}
            for n, u in enumerate(["zoe", "alice", "zoe", "erin"])
        ]
    )
    h.events.erase_user("erin")
    out = tmp_path / "all.jsonl"
    stats = run(h, out, None)
    assert sorted(orjson.loads(x)["user_id"] for x in out.read_bytes().splitlines()) == ["alice", "zoe"]
    assert stats.requested == 2  # type: ignore[attr-defined]


def test_degraded_answers_are_left_for_the_next_run(tmp_path: Path) -> None:
    h = twins()
    out = tmp_path / "recs.jsonl"
    h.realtime.up = False
    stats = run(h, out, ["alice", "bob"])
    assert stats.left_over == 2 and stats.exported == 0  # type: ignore[attr-defined]
    h.realtime.up = True
    stats = run(h, out, ["alice", "bob"])
    assert stats.exported == 2  # type: ignore[attr-defined]


def test_no_model_is_a_clear_error(tmp_path: Path) -> None:
    from core.errors import DependencyUnavailable

    h = twins()
    h.registry = InMemoryModelRegistry()
    with pytest.raises(DependencyUnavailable, match="no model is published"):
        run(h, tmp_path / "x.jsonl", ["alice"])


def cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    import sys

    from cli.main import main

    monkeypatch.setattr(sys, "argv", ["streamrec", "export", "recommendations", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_cli_input_errors_are_one_line_messages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users.txt"
    users.write_bytes(b"alice\n\n\tbob\x7f\n")
    out = str(tmp_path / "o.jsonl")
    assert cli(monkeypatch, "--users", str(users), "--out", out) == 1
    err = capsys.readouterr().err
    assert "line 3: user id contains the control character '\\x7f'" in err and "Traceback" not in err
    assert cli(monkeypatch, "--out", out) == 1
    assert "exactly one of --users FILE and --all" in capsys.readouterr().err
    assert cli(monkeypatch, "--all", "--users", str(users), "--out", out) == 1
    assert cli(monkeypatch, "--all", "--k", "100000", "--out", out) == 1
    assert "--k must be at most" in capsys.readouterr().err
