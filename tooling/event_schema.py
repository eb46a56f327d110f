"""Writes the JSON Schemas of event v1 (core.event_schema) into docs/schema/, so the published copies
cannot drift from the models: tests/unit/test_event_schema.py fails when a committed file differs from
what this module renders. After changing core/events.py, run

    python -m tooling.event_schema          # rewrites docs/schema/*.json  (or: make schema)
    python -m tooling.event_schema --check  # exit 1 if a file is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.event_schema import SCHEMAS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[Path, str]:
    return {SCHEMA_DIR / name: render(build()) for name, build in SCHEMAS.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = rendered()
    if args == ["--check"]:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"{path} is stale: run `python -m tooling.event_schema`", file=sys.stderr)
        return 1 if stale else 0
    if args:
        print("usage: python -m tooling.event_schema [--check]", file=sys.stderr)
        return 2
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
