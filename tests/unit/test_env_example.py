"""`.env.example` lists every Settings variable with its default; this file also generates it.

Regenerate after changing core/settings.py:  .venv/bin/python tests/unit/test_env_example.py > .env.example
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from core.settings import Settings
from retrain.tuning import TUNABLE
from tooling.settings import ToolingSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
REGENERATE = ".venv/bin/python tests/unit/test_env_example.py > .env.example"

HEADER = f"""\
# Every streamrec setting with its default. Copy to .env (read from the working directory) or export.
# Nested fields use __ (STREAMREC_<SECTION>__<FIELD>); lists are JSON. Real environment variables win
# over .env and over .devstack/stack.env (written by `streamrec devstack up`).
# Settings that are unset by default are commented out.
# Generated from core/settings.py and tooling/settings.py: {REGENERATE}
"""


def _render_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps([_render_value(v) if isinstance(v, SecretStr) else v for v in value])
    return str(value)


def _variables(model: type[BaseModel], prefix: str) -> list[tuple[str, Any]]:
    """(variable, default) for every leaf field, from the class defaults (not the environment)."""
    out: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        variable = f"{prefix}{name.upper()}"
        if isinstance(default, BaseModel):
            out.extend(_variables(type(default), f"{variable}__"))
        else:
            out.append((variable, default))
    return out


def setting_variables() -> list[tuple[str, Any]]:
    # The tooling's superset: the product's settings plus STREAMREC_DEVSTACK__* (the product ignores those).
    return _variables(ToolingSettings, "STREAMREC_")


# The modelling choices `streamrec retrain --tune` searches: a value set in .env is the operator's and
# always wins over the tuned one, so a copied .env.example must not set them.
TUNED = {f"STREAMREC_MODEL__{name.upper()}" for name in TUNABLE}
TUNED_NOTE = (
    "# Commented out: `streamrec retrain --tune` chooses these; a value set here (or in the environment)\n"
    "# is the operator's and always wins over the tuned one."
)


def render() -> str:
    lines = [HEADER.rstrip("\n")]
    section = None
    noted = False
    for variable, default in setting_variables():
        parts = variable.removeprefix("STREAMREC_").split("__")
        current = parts[0].lower() if len(parts) > 1 else "general"
        if current != section:
            lines.append(f"\n# --- {current}")
            section = current
        if variable in TUNED and not noted:
            lines.append(TUNED_NOTE)
            noted = True
        if default is None:
            lines.append(f"# {variable}=")
        elif variable in TUNED:
            lines.append(f"# {variable}={_render_value(default)}")
        else:
            lines.append(f"{variable}={_render_value(default)}")
    return "\n".join(lines) + "\n"


def test_env_example_lists_every_setting_with_its_default() -> None:
    assert ENV_EXAMPLE.is_file(), f".env.example is missing: {REGENERATE}"
    text = ENV_EXAMPLE.read_text()
    for variable, _ in setting_variables():
        assert f"{variable}=" in text, f"{variable} is missing from .env.example: {REGENERATE}"
    assert text == render(), (
        f".env.example is out of date with core/settings.py or tooling/settings.py: {REGENERATE}"
    )


def test_env_example_loads_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    for cls in (ToolingSettings, Settings):  # the product's Settings ignores the devstack section
        from_file = cls(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
        defaults = cls(_env_file=None)  # type: ignore[call-arg]
        assert from_file.model_dump(mode="json") == defaults.model_dump(mode="json")


def test_every_variable_is_a_real_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the generator itself: setting each listed variable changes the matching field."""
    variables = dict(setting_variables())
    assert "STREAMREC_KAFKA__TOPICS__EVENTS" in variables
    assert "STREAMREC_MODEL__WEIGHTS__RATE" in variables
    assert "STREAMREC_LOG_LEVEL" in variables
    for name in list(os.environ):
        if name.upper().startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMREC_KAFKA__TOPICS__DEAD_LETTER", "dl-x")
    monkeypatch.setenv("STREAMREC_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("STREAMREC_DEVSTACK__MONGO_PORT", "27099")
    s = ToolingSettings(_env_file=None)  # type: ignore[call-arg]
    assert (s.kafka.topics.dead_letter, s.log_level, s.devstack.mongo_port) == ("dl-x", "DEBUG", 27099)


if __name__ == "__main__":
    print(render(), end="")
