"""`streamrec rules ...` through typer's CliRunner, on the rule store's in-memory twin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from typer.testing import CliRunner

import cli.main
import cli.rules_cmd
from cli.app import app
from storage.merch_rules import InMemoryRuleStore


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> InMemoryRuleStore:
    twin = InMemoryRuleStore()

    @contextmanager
    def twins(_settings: Any) -> Iterator[InMemoryRuleStore]:
        yield twin

    cli.main.register_commands()
    monkeypatch.setattr(cli.rules_cmd, "rule_store", twins)
    monkeypatch.setenv("COLUMNS", "200")
    return twin


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_add_list_remove_history(store: InMemoryRuleStore) -> None:
    assert "no active rules (version 0)" in run("rules", "list").output
    made = run("rules", "add", "boost", "--id", "promo", "--where", "brand=acme", "--factor", "2")
    assert made.exit_code == 0, made.output
    assert "rule promo added" in made.output and "version 1" in made.output
    pin = run("rules", "add", "pin", "--id", "hero", "--item", "i-7", "--position", "1")
    assert pin.exit_code == 0, pin.output
    assert run("rules", "add", "diversity", "--max-per-category", "2").exit_code == 0
    listed = run("rules", "list")
    assert listed.exit_code == 0 and "version 3" in listed.output
    assert "brand = acme" in listed.output and "x2" in listed.output and "i-7 at 1" in listed.output
    assert "at most 2 per category" in listed.output
    gone = run("rules", "remove", "promo")
    assert gone.exit_code == 0 and "version 4" in gone.output
    active = [r.rule_id for r in store.current().rules]
    assert "promo" not in active and active[0] == "hero" and len(active) == 2
    history = run("rules", "history")
    assert history.exit_code == 0 and "remove" in history.output and "promo (boost)" in history.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("boost", "--where", "brand=acme"), "needs factor"),
        (("block",), "condition or item_ids"),
        (("block", "--where", "brand"), "PROPERTY=VALUE"),
        (("pin", "--position", "1"), "exactly one --item"),
        (("pin", "--item", "x", "--position", "100000"), "position"),
        (("pin", "--item", "x", "--position", "201"), "serving.max_k=200"),
        (("teleport",), "teleport"),
    ],
)
def test_bad_rules_exit_2_with_the_reason(
    store: InMemoryRuleStore, args: tuple[str, ...], message: str
) -> None:
    result = run("rules", "add", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert store.current().version == 0


def test_refusals(store: InMemoryRuleStore) -> None:
    assert run("rules", "add", "block", "--id", "b", "--item", "x").exit_code == 0
    again = run("rules", "add", "block", "--id", "b", "--item", "y")
    assert again.exit_code == 1 and "already exists" in again.output
    missing = run("rules", "remove", "nope")
    assert missing.exit_code == 2 and "no active rule" in missing.output
