"""cli.main registers the tooling's commands only where the tooling package is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from cli import main as cli_main


def test_without_tooling_only_the_product_commands_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "tooling" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert cli_main.command_modules() == cli_main.COMMAND_MODULES
    assert all(m.startswith("cli.") for m in cli_main.COMMAND_MODULES)


def test_with_tooling_its_commands_follow_the_products() -> None:
    modules = cli_main.command_modules()
    assert modules[: len(cli_main.COMMAND_MODULES)] == cli_main.COMMAND_MODULES
    assert "tooling.demo.command" in modules and "tooling.devstack.commands" in modules


def test_an_import_error_inside_tooling_surfaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The package exists but is broken: that is a bug to report, not "tooling not installed".
    (tmp_path / "tooling").mkdir()
    (tmp_path / "tooling" / "__init__.py").write_text("import streamrec_no_such_module\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "tooling" or m.startswith("tooling.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match="streamrec_no_such_module"):
        cli_main.command_modules()
