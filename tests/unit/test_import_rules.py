"""The layering rules of the developers' guide, checked on the source with the standard library's ``ast``.

Every ``import`` and ``from ... import`` counts, wherever it stands: at module level, inside a function
(a lazy import is still a dependency) or under ``if TYPE_CHECKING``. A failure lists each offending
import as ``path:line: module``. The last tests run the checker on a throw-away tree to show that each
rule can fail.

bson: forbidden in core/ and model/ with the network clients. It is a codec, not a client, but it ships
only inside the MongoDB driver's distribution (pymongo), so importing it would make the pure packages
depend on the driver; nothing in core/ or model/ imports it (core/storable.py states the BSON limits it
needs itself).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCT = ("core", "storage", "model", "consumer", "retrain", "serving")
ROLES = ("consumer", "retrain", "serving")
# cli/ is the composition root (the `streamrec` command); tooling/ is everything a production deployment
# does not run. The product imports neither; cli/ reaches the tooling only from cli/main.py, which
# registers its commands when the package is installed (the production image leaves it out).
ROOT_PACKAGE = "cli"
TOOLING = ("tooling",)
CLI_ENTRY = "cli/main.py"
# The Python client storefronts install: the event models (core) and network clients, no role.
CLIENT = "streamrec_client"
PROJECT = (*PRODUCT, ROOT_PACKAGE, *TOOLING, CLIENT, "tests")
PURE = ("core", "model")
NETWORK_CLIENTS = frozenset(
    {
        "confluent_kafka",
        "pymongo",
        "bson",
        "gridfs",
        "motor",
        "redis",
        "hiredis",
        "httpx",
        "requests",
        "aiohttp",
        "urllib3",
        "fastapi",
        "starlette",
        "uvicorn",
    }
)
# README's architecture table: which project packages each product package may import.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "storage": frozenset({"core"}),
    "model": frozenset({"core"}),
    "consumer": frozenset({"core", "storage", "model"}),
    "retrain": frozenset({"core", "storage", "model"}),
    "serving": frozenset({"core", "storage", "model"}),
    "cli": frozenset({*PRODUCT, *TOOLING}),  # tooling from cli/main.py only: cli_importing_tooling
    "tooling": frozenset({*PRODUCT, ROOT_PACKAGE}),
    CLIENT: frozenset({"core"}),
}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the root, with forward slashes
    line: int
    module: str  # absolute dotted name

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module}"


def _package_of(rel: Path) -> list[str]:
    """The dotted package a module lives in (what a relative import is relative to)."""
    parts = list(rel.with_suffix("").parts)
    return parts[:-1]  # a module's package, or for an __init__.py the package it defines


def imports_in(root: Path, package: str) -> Iterator[Import]:
    for file in sorted((root / package).rglob("*.py")):
        rel = file.relative_to(root)
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(rel.as_posix(), node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(rel)
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                if module != "__future__":
                    yield Import(rel.as_posix(), node.lineno, module)


def violations(root: Path, packages: Iterable[str], forbidden: Iterable[str]) -> list[Import]:
    banned = frozenset(forbidden)
    return [imp for pkg in packages for imp in imports_in(root, pkg) if imp.top in banned]


def report(found: list[Import], rule: str) -> str:
    return f"{rule}; offending imports:\n" + "\n".join(f"  {imp}" for imp in found)


# ---------------------------------------------------------------- the rules


def roles_importing_each_other(root: Path) -> list[Import]:
    return [imp for role in ROLES for imp in imports_in(root, role) if imp.top in ROLES and imp.top != role]


def pure_importing_network_clients(root: Path) -> list[Import]:
    return violations(root, PURE, NETWORK_CLIENTS)


def core_importing_project(root: Path) -> list[Import]:
    return violations(root, ["core"], [p for p in PROJECT if p != "core"])


def product_importing_tooling(root: Path) -> list[Import]:
    return violations(root, PRODUCT, (*TOOLING, ROOT_PACKAGE))


def cli_importing_tooling(root: Path) -> list[Import]:
    return [imp for imp in imports_in(root, ROOT_PACKAGE) if imp.top in TOOLING and imp.path != CLI_ENTRY]


def outside_the_table(root: Path, package: str) -> list[Import]:
    allowed = MAY_IMPORT[package] | {package}
    return [imp for imp in imports_in(root, package) if imp.top in PROJECT and imp.top not in allowed]


def test_roles_never_import_each_other() -> None:
    found = roles_importing_each_other(ROOT)
    assert not found, report(found, f"a role ({', '.join(ROLES)}) imports another role")


def test_core_and_model_import_no_network_client() -> None:
    found = pure_importing_network_clients(ROOT)
    assert not found, report(found, "core/ or model/ imports a network client")


def test_core_imports_no_other_project_package() -> None:
    found = core_importing_project(ROOT)
    assert not found, report(found, "core/ imports another project package")


def test_product_never_imports_the_tooling() -> None:
    found = product_importing_tooling(ROOT)
    assert not found, report(found, f"a product package imports the tooling ({', '.join(TOOLING)}) or cli")


def test_cli_reaches_the_tooling_only_from_its_entry_point() -> None:
    found = cli_importing_tooling(ROOT)
    assert not found, report(found, f"only {CLI_ENTRY} may import the tooling (so cli works without it)")


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_each_package_imports_only_what_the_readme_table_allows(package: str) -> None:
    found = outside_the_table(ROOT, package)
    allowed = ", ".join(sorted(MAY_IMPORT[package])) or "no other project package"
    assert not found, report(found, f"{package}/ may import {allowed}")


def test_every_top_level_package_is_checked() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk == {*PRODUCT, "cli", "tooling", CLIENT, "tests"}, (
        "a new top-level package needs its place above"
    )
    assert set(MAY_IMPORT) == {*PRODUCT, ROOT_PACKAGE, *TOOLING, CLIENT}


# ---------------------------------------------------------------- each rule can fail


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_each_rule_reports_the_offending_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **{f"{pkg}/__init__.py": "" for pkg in PROJECT},
            "core/keys.py": "import os\n\nfrom storage.x import y\n",
            "model/net.py": "def f():\n    import redis.asyncio\n",
            "serving/app.py": "from consumer.plans import plan_events\nfrom tooling.demo import page\n",
            "retrain/sub/__init__.py": "",
            "retrain/sub/m.py": "from ...serving import routes\nfrom . import sibling\n",
            "consumer/ok.py": "from core.keys import Keys\nfrom storage.kafka import k\n",
            "storage/x.py": "def f():\n    from cli.context import load_settings\n",
            "cli/main.py": "import importlib\n\nfrom tooling.app import bench_app\n",
            "cli/serve.py": "from serving.app import create_app\nfrom tooling.devstack import processes\n",
        },
    )
    assert [str(i) for i in roles_importing_each_other(tmp_path)] == [
        "retrain/sub/m.py:1: serving",
        "serving/app.py:1: consumer.plans",
    ]
    assert [str(i) for i in pure_importing_network_clients(tmp_path)] == ["model/net.py:2: redis.asyncio"]
    assert [str(i) for i in core_importing_project(tmp_path)] == ["core/keys.py:3: storage.x"]
    assert [str(i) for i in product_importing_tooling(tmp_path)] == [
        "storage/x.py:2: cli.context",
        "serving/app.py:2: tooling.demo",
    ]
    assert [str(i) for i in cli_importing_tooling(tmp_path)] == ["cli/serve.py:2: tooling.devstack"]
    assert [str(i) for i in outside_the_table(tmp_path, "consumer")] == []
    assert [str(i) for i in outside_the_table(tmp_path, "retrain")] == ["retrain/sub/m.py:1: serving"]
    assert "  core/keys.py:3: storage.x" in report(core_importing_project(tmp_path), "rule")
