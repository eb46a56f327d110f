"""The Dockerfile, read as text: two images (the full one, the default target, and the lean `serving`
one without torch), multi-stage, non-root, health-checked, torch pinned like pyproject."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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


# The two images: the lean one for serving (no torch, no extra) and the full one (every role).
SERVING, FULL = "serving", "full"
TARGETS = (SERVING, FULL)


def stage(name: str) -> Stage:
    found = [s for s in stages()[1] if s.name == name]
    assert len(found) == 1, f"the Dockerfile has no single stage named {name}"
    return found[0]


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, root first."""
    names = {s.name for s in stages()[1] if s.name}
    result = [stage(name)]
    while result[0].base in names:
        result.insert(0, stage(result[0].base))
    return result


def image(name: str) -> Stage:
    """A target as one stage: its root's base image, every instruction of its FROM chain in order."""
    links = chain(name)
    return Stage(links[0].base, name, [i for link in links for i in link.instructions])


def venv_source(name: str) -> Stage:
    """The builder (as one stage, see ``image``) that a target copies its /opt/venv from."""
    copies = [c for c in image(name).all("COPY") if c.startswith("--from=") and "/opt/venv" in c]
    assert len(copies) == 1, f"{name} should copy /opt/venv from exactly one builder: {copies}"
    return image(copies[0].split()[0].removeprefix("--from="))


def pip_installs(name: str) -> list[str]:
    return [r for r in venv_source(name).all("RUN") if "pip install" in r]


def project_installs(name: str) -> list[set[str]]:
    """The extras of each `pip install .[extras]` of the project a target's builder runs."""
    found = []
    for run in pip_installs(name):
        for match in re.finditer(r"pip install ['\"]?\.(?:\[([\w,-]+)\])?['\"]?(?=\s|$)", run):
            found.append(set(filter(None, (match.group(1) or "").split(","))))
    return found


def runtime() -> Stage:
    """The default target (`docker build .`): the last stage."""
    return image(stages()[1][-1].name or "")


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_full_image_is_the_default_target_and_serving_is_its_own() -> None:
    assert stages()[1][-1].name == FULL, "`docker build .` must keep building the full image"
    assert chain(SERVING)[-1].name == SERVING and FULL not in {s.name for s in chain(SERVING)}


@pytest.mark.parametrize("target", TARGETS)
def test_multi_stage_build_copies_the_venv_into_a_slim_runtime(target: str) -> None:
    assert image(target).base == "python:3.11-slim"
    assert venv_source(target).name != target
    assert all("pip install" not in r for r in image(target).all("RUN"))


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_runs_as_a_non_root_user(target: str) -> None:
    users = image(target).all("USER")
    assert users, "no USER in the runtime stage: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in r and user in r for r in image(target).all("RUN")) or user.isdigit()


@pytest.mark.parametrize("target", TARGETS)
def test_healthcheck_probes_serving_healthz(target: str) -> None:
    checks = image(target).all("HEALTHCHECK")
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")
    default_cmd = exec_form(image(target).all("CMD")[-1])
    port = default_cmd[default_cmd.index("--port") + 1]
    assert f"127.0.0.1:{port}/healthz" in argv[2]
    assert port in image(target).all("EXPOSE")[-1].split()


@pytest.mark.parametrize("target", TARGETS)
def test_both_images_run_streamrec_and_default_to_serve(target: str) -> None:
    assert exec_form(image(target).all("ENTRYPOINT")[-1]) == ["streamrec"]
    assert "streamrec" in pyproject()["project"]["scripts"]
    assert exec_form(image(target).all("CMD")[-1])[0] == "serve"


def torch_pin(requirements: list[str]) -> str | None:
    pins = [d for d in requirements if re.match(r"torch\s*==", d)]
    return pins[0].split("==")[1].strip() if pins else None


def test_torch_is_pinned_from_the_cpu_index_like_pyproject_in_the_full_image_only() -> None:
    meta = pyproject()["project"]
    pinned = torch_pin(meta["optional-dependencies"]["train"])
    assert pinned == "2.13.0", "pyproject's `train` extra no longer pins torch"
    assert torch_pin(meta["dependencies"]) is None, "torch is in the base dependencies: serving would get it"
    full = " ".join(pip_installs(FULL))
    assert re.search(
        rf"pip install torch=={re.escape(pinned)} --index-url https://download\.pytorch\.org/whl/cpu", full
    )
    assert "torch" not in " ".join(pip_installs(SERVING))
    # make install (what `make test` runs) puts the same torch in first, from the same CPU index.
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert set(re.findall(r"torch==([\w.]+)", makefile)) == {pinned}
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in makefile


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


def test_serving_installs_no_extra_and_the_full_image_only_the_train_extra() -> None:
    assert project_installs(SERVING) == [set()], pip_installs(SERVING)
    assert project_installs(FULL) == [{"train"}], pip_installs(FULL)


def test_torch_and_the_bench_libraries_are_only_extras_and_dev_gets_them() -> None:
    meta = pyproject()["project"]
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in meta["dependencies"]}
    extras = meta["optional-dependencies"]
    for extra, only_there in (("bench", ("implicit", "matplotlib")), ("train", ("torch",))):
        for name in only_there:
            assert name not in names, f"{name} belongs in the {extra} extra, not the product"
            assert any(d.startswith(name) for d in extras[extra])
    # `make install` installs `.[dev]`: the test suite needs torch and the bench libraries.
    assert re.search(r"pip install -q -e '\.\[dev\]'", (ROOT / "Makefile").read_text(encoding="utf-8"))
    self_refs = [d for d in extras["dev"] if d.startswith("streamrec[")]
    assert self_refs and {"train", "bench"} <= set(
        self_refs[0].removeprefix("streamrec[").rstrip("]").split(",")
    )
