"""What every bench JSON says it measured (tooling.bench.common.write_report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tooling.bench import common


def test_the_report_names_the_commit_the_run_started_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "git_revision", lambda: "aaaa")
    monkeypatch.setattr(common, "_start_revision", None)
    common.remember_start_revision()
    monkeypatch.setattr(common, "git_revision", lambda: "bbbb-dirty")  # committed while it ran
    out = tmp_path / "r.json"
    common.write_report(out, {"figure": 1}, Console(quiet=True), "t")
    assert json.loads(out.read_text())["git_revision"] == "aaaa"


def test_a_bench_command_remembers_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.app import app
    from cli.main import register_commands

    register_commands()

    monkeypatch.setattr(common, "git_revision", lambda: "cccc")
    monkeypatch.setattr(common, "_start_revision", None)
    result = CliRunner().invoke(app, ["bench", "cold-start", "--dataset", "nope"])
    assert result.exit_code != 0  # a clear error, after the group's callback ran
    assert common._start_revision == "cccc"
