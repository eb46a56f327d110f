"""`streamrec experiment ...` and `streamrec report ...` through typer's CliRunner, on the in-memory twins.

The commands open their MongoDB adapters through ``cli.online_support.experiment_admin``; these tests
hand them an ``ExperimentAdmin`` over the twins instead (the same object the API and the storage tests
use), so what is checked here is the command line: parsing, exit codes, tables and JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import cli.experiment
import cli.report
from cli.app import app
from storage.experiment_admin import ExperimentAdmin
from tests.unit.online_fixtures import event, impression, recent
from tests.unit.test_experiment_admin import add_traffic, make_admin


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> ExperimentAdmin:
    ops = make_admin()

    @contextmanager
    def twins(_settings: Any) -> Iterator[ExperimentAdmin]:
        yield ops

    monkeypatch.setattr(cli.experiment, "experiment_admin", twins)
    monkeypatch.setattr(cli.report, "experiment_admin", twins)
    monkeypatch.setenv("COLUMNS", "200")
    return ops


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_create_list_show_stop(admin: ExperimentAdmin, tmp_path: Path) -> None:
    made = run("experiment", "create", "exp", "--variant", "control:0.5", "--variant", "treatment:0.5:2")
    assert made.exit_code == 0, made.output
    assert "experiment exp is running on recommendations" in made.output
    assert admin.get("exp").variants[1].model_version == "2"
    listed = run("experiment", "list")
    assert listed.exit_code == 0 and "treatment:0.5:v2" in listed.output and "running" in listed.output

    add_traffic(admin, admin.get("exp"), 400, {"control": 0.1, "treatment": 0.1})
    shown = run("experiment", "show", "exp", "--json", str(tmp_path / "exp.json"))
    assert shown.exit_code == 0, shown.output
    assert "no significant difference on ctr" in shown.output and "sample ratio p=" in shown.output
    saved = orjson.loads((tmp_path / "exp.json").read_bytes())
    assert saved["experiment"]["experiment_id"] == "exp" and len(saved["report"]["variants"]) == 2
    as_json = run("experiment", "show", "exp", "--metric", "conversion_rate", "--json", "-")
    assert orjson.loads(as_json.output)["report"]["metric"] == "conversion_rate"

    stopped = run("experiment", "stop", "exp")
    assert stopped.exit_code == 0 and "experiment exp is stopped" in stopped.output


def test_bad_input_exits_2_with_the_reason_and_changes_nothing(admin: ExperimentAdmin) -> None:
    cases = {
        ("--variant", "a"): "must be NAME:SHARE",
        ("--variant", "a:x", "--variant", "b:0.5"): "is not a number",
        ("--variant", "a:0.5", "--variant", "b:0.5:seven"): "is not a model version number",
        ("--variant", "a:0.5", "--variant", "b:0.6"): "shares must add up to 1",
        ("--variant", "a:0.5", "--variant", "a:0.5"): "unique",
        ("--variant", "a:0.5", "--variant", "b/c:0.5"): "letters, digits",
        ("--variant", "a:0.5", "--variant", "b:0.5:99"): "model v99 does not exist",
        ("--variant", "a:0.5", "--variant", "b:0.5", "--override", "b:colour=1"): "not supported",
        ("--variant", "a:0.5", "--variant", "b:0.5", "--override", "c:session_weight=1"): "do not exist",
        ("--variant", "a:0.5", "--variant", "b:0.5", "--control", "z"): "not one of the variants",
    }
    for args, words in cases.items():
        result = run("experiment", "create", "exp", *args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert admin.list() == []
    assert run("experiment", "show", "nope").exit_code == 2
    assert "does not exist" in run("experiment", "stop", "nope").output


def test_create_with_overrides_and_both_surfaces(admin: ExperimentAdmin) -> None:
    result = run(
        "experiment",
        "create",
        "weights",
        "--variant",
        "control:0.5",
        "--variant",
        "heavy:0.5",
        "--override",
        "heavy:session_weight=0.8",
        "--surface",
        "recommendations",
        "--surface",
        "similar",
    )
    assert result.exit_code == 0, result.output
    made = admin.get("weights")
    assert made.variants[1].overrides == {"session_weight": 0.8} and made.surfaces == [
        "recommendations",
        "similar",
    ]
    busy = run("experiment", "create", "other", "--variant", "a:0.5", "--variant", "b:0.5")
    assert busy.exit_code == 1 and "stop it first" in busy.output


def test_promote_refused_without_a_winner_then_forced(admin: ExperimentAdmin) -> None:
    run("experiment", "create", "exp", "--variant", "control:0.5", "--variant", "treatment:0.5:2")
    add_traffic(admin, admin.get("exp"), 300, {"control": 0.1, "treatment": 0.11})
    refused = run("experiment", "promote", "exp")
    assert refused.exit_code == 1 and "no variant to promote" in refused.output
    assert "vs control" in refused.output  # the report is printed with the refusal
    weak = run("experiment", "promote", "exp", "--variant", "treatment")
    assert weak.exit_code == 1 and "not the significant winner" in weak.output
    assert admin.registry.champion().version == 1  # type: ignore[union-attr]
    forced = run("experiment", "promote", "exp", "--variant", "treatment", "--force")
    assert forced.exit_code == 0, forced.output
    assert "model v2 is now the champion (forced)" in forced.output
    assert admin.registry.get(2).online["decided_by"] == "cli"


def test_promote_the_winner(admin: ExperimentAdmin) -> None:
    run("experiment", "create", "exp", "--variant", "control:0.5", "--variant", "treatment:0.5:2")
    add_traffic(admin, admin.get("exp"), 4000, {"control": 0.10, "treatment": 0.14})
    result = run("experiment", "promote", "exp")
    assert result.exit_code == 0, result.output
    assert admin.registry.champion().version == 2  # type: ignore[union-attr]
    assert admin.get("exp").winner == "treatment"


def test_report_online_and_shadow(admin: ExperimentAdmin, tmp_path: Path) -> None:
    shown = [impression(f"r{i}", f"u{i}", minutes=recent(30)) for i in range(4)]
    shadow = impression("r0", "u0", ("x",), version="9", minutes=recent(30), shadow=True)
    admin.impressions.insert_impressions([*shown, shadow])  # type: ignore[attr-defined]
    admin.events.insert_events(  # type: ignore[attr-defined]
        [
            event("e1", shown[0], minutes=recent(29)),
            event("n1", None, item="x", user="u0", minutes=recent(28)),
        ]
    )
    result = run("report", "online", "--since", "2h", "--by", "surface", "--json", str(tmp_path / "o.json"))
    assert result.exit_code == 0, result.output
    assert "recommendations" in result.output and "25.00% [" in result.output
    assert orjson.loads((tmp_path / "o.json").read_bytes())["rows"][0]["impressions"] == 4
    empty = run("report", "online", "--since", "1m")
    assert empty.exit_code == 0 and "no impressions since" in empty.output
    assert run("report", "online", "--since", "soon").exit_code == 2
    shadow_out = run("report", "shadow", "--since", "2h")
    assert shadow_out.exit_code == 0, shadow_out.output
    assert "shadow v9 vs live, 1 shoppers" in shadow_out.output and "McNemar" in shadow_out.output
    bad_path = run("report", "online", "--json", str(tmp_path / "missing" / "o.json"))
    assert bad_path.exit_code == 2 and "cannot write --json" in bad_path.output
