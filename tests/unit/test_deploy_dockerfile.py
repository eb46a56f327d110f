"""The Dockerfile, read as text: multi-stage, non-root, health-checked, torch pinned like pyproject."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    result = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, args
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), match.group(1))
            found.append(Stage(base=base, name=match.group(2)))
        elif not found and keyword == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
        elif found:
            found[-1].instructions.append((keyword, args))
    return global_args, found


def runtime() -> Stage:
    return stages()[1][-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_multi_stage_build_copies_the_venv_into_a_slim_runtime() -> None:
    _, all_stages = stages()
    assert len(all_stages) >= 2
    builder_names = {s.name for s in all_stages[:-1] if s.name}
    assert runtime().base == "python:3.11-slim"
    copies = [c for c in runtime().all("COPY") if c.startswith("--from=")]
    assert any(c.split()[0].removeprefix("--from=") in builder_names and "/opt/venv" in c for c in copies)
    assert not runtime().all("RUN") or all("pip install" not in r for r in runtime().all("RUN"))


def test_runtime_runs_as_a_non_root_user() -> None:
    users = runtime().all("USER")
    assert users, "no USER in the runtime stage: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in r and user in r for r in runtime().all("RUN")) or user.isdigit()


def test_healthcheck_probes_serving_healthz() -> None:
    checks = runtime().all("HEALTHCHECK")
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")
    default_cmd = exec_form(runtime().all("CMD")[-1])
    port = default_cmd[default_cmd.index("--port") + 1]
    assert f"127.0.0.1:{port}/healthz" in argv[2]


def test_one_image_for_every_role() -> None:
    assert exec_form(runtime().all("ENTRYPOINT")[-1]) == ["streamrec"]
    assert "streamrec" in pyproject()["project"]["scripts"]
    assert exec_form(runtime().all("CMD")[-1])[0] == "serve"


def test_torch_is_pinned_from_the_cpu_index_like_pyproject() -> None:
    pins = [d for d in pyproject()["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert pins, "pyproject no longer pins torch"
    pinned = pins[0].split("==")[1].strip()
    builder_runs = " ".join(r for s in stages()[1][:-1] for r in s.all("RUN"))
    assert re.search(
        rf"pip install torch=={re.escape(pinned)} --index-url https://download\.pytorch\.org/whl/cpu",
        builder_runs,
    )
    assert pinned == "2.13.0"


# Left out of the production image: `pip install .` builds the wheel from what was copied (hatchling
# skips a listed package that is absent), and cli.main registers tooling's commands only when it exists.
TOOLING = "tooling"


def test_every_product_package_is_copied_into_the_build_and_the_tooling_is_not() -> None:
    packages = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert TOOLING in packages
    copied = " ".join(c for s in stages()[1] for c in s.all("COPY"))
    for package in packages:
        if package != TOOLING:
            assert re.search(rf"(^|\s){package}\s", copied), f"Dockerfile does not COPY {package}/"
    assert not re.search(rf"(^|\s|/){TOOLING}(/|\s)", copied), "the production image must not hold tooling/"
    for needed in ("pyproject.toml", "README.md"):
        assert needed in copied


def test_dockerignore_keeps_what_the_build_needs_and_drops_the_venv() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ignored = [p for p in patterns if not p.startswith("!")]
    packages = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for needed in ["pyproject.toml", "README.md", *[f"{p}/__init__.py" for p in packages]]:
        hits = [p for p in ignored if fnmatch.fnmatch(needed, p) or fnmatch.fnmatch(needed.split("/")[0], p)]
        assert not hits, f".dockerignore drops {needed} ({hits})"
    for heavy in (".venv", ".git", ".devstack"):
        assert heavy in ignored


def test_the_image_installs_no_extra_and_the_bench_libraries_are_only_extras() -> None:
    installs = [r for s in stages()[1] for r in s.all("RUN") if "pip install ." in r]
    assert installs
    assert all(re.search(r"pip install \.(\s|$)", r) for r in installs), installs
    meta = pyproject()["project"]
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in meta["dependencies"]}
    for bench_only in ("implicit", "matplotlib"):
        assert bench_only not in names, f"{bench_only} belongs in the bench/dev extras, not the product"
        assert any(d.startswith(bench_only) for d in meta["optional-dependencies"]["bench"])
