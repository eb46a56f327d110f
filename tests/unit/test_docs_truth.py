"""The docs' checkable statements are true: every relative link and repo path in README.md, BENCHMARKS.md
and docker-compose.yml's comments exists, every `streamrec` command line in the docs parses with the real
CLI, and docs/cli.md is what the CLI renders. The second half shows that each check can fail.

The conventions the docs follow for these checks are in tests/unit/docs_checks.py.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from tests.unit.docs_checks import (
    DOCS,
    ROOT,
    command_lines,
    command_problems,
    compose_comments,
    default_problems,
    doc_spans,
    link_problems,
    path_problems,
    setting_problems,
    spans,
)
from tooling.cli_docs import DOC_PATH, render, root_command
from tooling.producers.replay_sources import GENERIC_OPTIONAL, GENERIC_REQUIRED, load_source
from tooling.settings import ToolingSettings

# ------------------------------------------------------------------ the checks on the real docs


def test_every_relative_link_points_to_an_existing_file_and_heading() -> None:
    problems = []
    for doc in DOCS:
        problems += link_problems(doc, (ROOT / doc).read_text(encoding="utf-8"), ROOT)
    assert not problems, "\n".join(problems)


def test_every_repo_path_named_in_the_docs_exists() -> None:
    problems = path_problems(list(doc_spans()), ROOT)
    assert not problems, "\n".join(problems)


def test_every_streamrec_command_line_in_the_docs_parses_with_the_real_cli() -> None:
    found = list(doc_spans())
    assert sum(1 for s in found for _ in command_lines(s)) >= 20, "the docs' command lines were not found"
    problems = command_problems(found)
    assert not problems, "\n".join(problems)


def test_the_cli_reference_is_generated_from_the_current_cli() -> None:
    committed, current = DOC_PATH.read_text(encoding="utf-8"), render()
    diff = difflib.unified_diff(
        committed.splitlines(), current.splitlines(), "docs/cli.md", "the CLI", lineterm=""
    )
    stale = "docs/cli.md is stale: python -m tooling.cli_docs\n"
    assert committed == current, stale + "\n".join(list(diff)[:40])


def test_the_cli_reference_documents_every_option_of_every_command() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    root = root_command()
    stack: list[tuple[list[str], Any]] = [([], root)]
    while stack:
        path, command = stack.pop()
        assert f"`{' '.join(['streamrec', *path])}`" in text
        for name, sub in getattr(command, "commands", {}).items():
            stack.append(([*path, name], sub))
        for param in command.params:
            assert any(f"`{opt}" in text for opt in param.opts), (path, param.opts)


def test_every_setting_named_in_the_docs_exists() -> None:
    problems = []
    for doc in (*DOCS, "docs/cli.md", "docker-compose.yml"):
        problems += setting_problems((ROOT / doc).read_text(encoding="utf-8"), doc)
    assert not problems, "\n".join(problems)


def test_every_default_stated_beside_a_setting_is_the_codes() -> None:
    problems = []
    for doc in DOCS:
        problems += default_problems((ROOT / doc).read_text(encoding="utf-8"), doc)
    assert not problems, "\n".join(problems)


def _section(doc: str, heading: str) -> str:
    text = (ROOT / doc).read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    ends = [text.find(f"\n{'#' * n} ", start + 1) for n in range(1, len(level) + 1)]
    return text[start : min([e for e in ends if e > 0] or [len(text)])]


def test_the_replay_csv_columns_in_the_readme_are_the_ones_replay_reads() -> None:
    section = _section("README.md", "### Replaying your own events: `replay csv`")
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    documented = {cell.strip(" `"): need.strip() for cell, need in rows}
    assert set(documented) == set(GENERIC_REQUIRED) | set(GENERIC_OPTIONAL)
    assert {c for c, need in documented.items() if need == "yes"} == set(GENERIC_REQUIRED)


def test_the_replay_csv_example_reads_as_the_readme_says() -> None:
    data = load_source("csv", ROOT / "docs" / "examples" / "events.csv")
    last_line = len((ROOT / "docs" / "examples" / "events.csv").read_text().splitlines())
    assert len(data.events) == data.rows - 1
    assert [e.row for e in data.errors] == [last_line]  # "whose last row is rejected on purpose"


def test_the_ports_in_troubleshooting_are_the_defaults() -> None:
    section = _section("README.md", "### A port is in use")
    s = ToolingSettings.model_construct()
    d = s.devstack
    for port in (d.kafka_port, d.mongo_port, d.redis_port, s.serving.port):
        assert f"on {port}" in section, port
    for port in (s.consumer.metrics_port, s.retrain.metrics_port):
        assert f"metrics on {port}" in section, port


# ------------------------------------------------------------------ the checks can fail


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.png").write_bytes(b"")
    text = "# Title\n## Quick start\n![ok](docs/a.png) [ok](#quick-start) [web](https://example.com)\n"
    assert link_problems("R.md", text, tmp_path) == []
    bad = "# Title\n![x](docs/missing.png)\n[y](#no-such-heading)\n```\n[z](in-code-is-not-a-link.md)\n```\n"
    problems = link_problems("R.md", bad, tmp_path)
    assert len(problems) == 2, problems
    assert "docs/missing.png" in problems[0] and "no-such-heading" in problems[1]


def test_a_missing_repo_path_is_reported_and_runtime_outputs_are_not(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text("")
    text = (
        "See `cli/x.py`, `cli/`, `cli/y.py`, `deploy/README-compose.md`, `.devstack/stack.env`,\n"
        "`../shared/data` and `streamrec bench quality --dataset csv --plot out/q.png`.\n"
    )
    problems = path_problems(list(spans("R.md", text)), tmp_path)
    assert [p.rsplit(": ", 1)[1] for p in problems] == [
        "cli/y.py does not exist in the repo",
        "deploy/README-compose.md does not exist in the repo",
    ]
    comment = list(compose_comments("# Details: deploy/README-compose.md.\nx: 1  # see cli/x.py\n"))
    problems = path_problems(comment, tmp_path)
    assert len(problems) == 1 and "deploy/README-compose.md" in problems[0]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("`streamrec devstack up|down|status`", []),
        ("`streamrec model list \\| show V \\| promote V --reason R \\| rollback`", []),
        ("`streamrec dead-letter list \\| replay [--code C] [--since 2h\\|ISO] [--limit N]`", []),
        ("`streamrec replay csv --path <file> --rejects rejects.csv`", []),
        ("`make demo DEMO_ARGS=--exit`", []),
        ("`streamrec bench quality --plots q.png`", ["--plots is not an option"]),
        ("`streamrec devstack up|restart`", ["`streamrec devstack restart` is not a command"]),
        ("`streamrec model show 3 4`", ["2 positional values but it takes 1"]),
        ("`streamrec consume --group-id g --metrics-port 1`", ["--metrics-port is not an option"]),
    ],
)
def test_a_wrong_command_or_option_is_reported(line: str, expected: list[str]) -> None:
    problems = command_problems(list(spans("R.md", line)))
    assert [p.rsplit(": ", 1)[1] for p in problems] == expected


def test_shell_blocks_are_read_with_continuations_and_pipes() -> None:
    text = (
        "```bash\nstreamrec bench serve --items 10 \\\n  --nope 1 | tee x\n"
        "streamrec serve --port 1  # a comment\n```\n"
    )
    problems = command_problems(list(spans("R.md", text)))
    assert [p.rsplit(": ", 1)[1] for p in problems] == ["--nope is not an option"]


def test_a_setting_that_does_not_exist_is_reported() -> None:
    text = "STREAMREC_KAFKA__BOOTSTRAP STREAMREC_SERVING__API_KEYS_READ|INGEST|ADMIN STREAMREC_HTTP_PORT"
    assert setting_problems(text, "R.md") == []
    bad = "STREAMREC_KAFKA__TOPICS__EVENT STREAMREC_SERVING__API_KEYS_READ|WRITE STREAMREC_SERVER__PORT"
    assert [p.rsplit(": ", 1)[1] for p in setting_problems(bad, "R.md")] == [
        "no setting 'event'",
        "no setting 'api_keys_write'",
        "no setting 'server'",
    ]


def test_a_wrong_default_beside_a_setting_is_reported() -> None:
    good = (
        "| `STREAMREC_KAFKA__BOOTSTRAP` | `127.0.0.1:19092` | x |\n"
        "| `STREAMREC_SERVING__API_KEYS_ADMIN` | `[]` |\n`STREAMREC_KAFKA__SESSION_TIMEOUT_MS`, 6 s, "
        "`STREAMREC_CONSUMER__METRICS_PORT` (9101), `STREAMREC_SERVING__MODEL_POLL_S`, 5 s, and "
        "`STREAMREC_CONSUMER__SHUTDOWN_GRACE_S`\n(10 s); `STREAMREC_CONSUMER__METRICS_PORT` (0 turns it off)"
    )
    assert default_problems(good, "R.md") == []
    bad = "| `STREAMREC_MONGO__DATABASE` | `streamrecs` |\n`STREAMREC_RETRAIN__GATE_MIN_USERS` (500) users"
    assert [p.split(": ")[1] for p in default_problems(bad, "R.md")] == [
        "STREAMREC_MONGO__DATABASE",
        "STREAMREC_RETRAIN__GATE_MIN_USERS",
    ]
