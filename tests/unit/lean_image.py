"""What the lean serving image (Dockerfile target `serving`) can import, simulated in a subprocess.

The image installs the packages the Dockerfile copies and the dependency closure of pyproject's
`[project] dependencies`, no extra. ``lean_tree`` builds that world from this environment (symlinks to
the product and to site-packages minus every module the image lacks: torch, the benchmark libraries,
the dev tools, tooling/); ``python -S -m tests.unit.lean_image MODE ...`` then runs in it, where an
import of torch fails as it would in the image:

- ``modules``: imports every module of the product's packages; prints which failed and on what.
- ``serve ARTIFACT_DIR``: the serving app over in-memory twins with the production artifact loader
  serves a trained artifact; prints the status of each request and whether torch got loaded.
- ``factory``: builds the app as ``streamrec serve`` does in each worker (production adapters).
- ``cli ARG...``: ``streamrec ARG...`` as the image's entry point runs it.

The parent (the pytest process) computes the tree; only the standard library and the product run in
the subprocess before MODE.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import pkgutil
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "streamrec"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dependency_closure(requirements: list[str]) -> set[str]:
    """Canonical names of the distributions that ``requirements`` pull in, transitively, with the extras
    they name (``uvicorn[standard]``) and the environment markers that hold here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    done: set[tuple[str, str]] = set()  # (distribution, extra); "" is its base requirements
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        names.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: nothing of it can be imported anyway
        for extra in ["", *req.extras]:
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for line in dist.requires or []:
                sub = Requirement(line)
                if sub.marker is None:
                    if not extra:
                        todo.append(sub)
                elif sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    return names


def product_packages() -> list[str]:
    """The packages the Dockerfile copies into the image (every wheel package but tooling/)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return [p for p in wheel if re.search(rf"^COPY {p} \./{p}$", text, re.MULTILINE)]


def blocked_modules() -> list[str]:
    """Top-level modules installed here that the lean image lacks."""
    from packaging.utils import canonicalize_name

    image = dependency_closure(pyproject()["project"]["dependencies"])
    image.add(PROJECT)
    blocked = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        if module.startswith("_") or module in product_packages():
            continue  # private helpers (.pth hooks) and the product itself
        if not any(canonicalize_name(d) in image for d in dists):
            blocked.add(module)
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    blocked |= set(wheel) - set(product_packages())
    return sorted(blocked)


def site_packages() -> Path:
    import numpy

    return Path(numpy.__file__).resolve().parents[1]


def lean_tree(tmp: Path) -> dict[str, str]:
    """A copy (of symlinks) of what the lean image can import, under ``tmp``: ``image/`` holds the
    product packages (and tests/, for the probe's helpers), ``site/`` this environment's site-packages
    without the blocked modules and their distributions' metadata. Returns the subprocess environment:
    run it with ``python -S`` (no site-packages, no .pth hooks such as an editable install's) and
    ``cwd=image``, so nothing else is on sys.path."""
    from packaging.utils import canonicalize_name

    blocked = set(blocked_modules())
    image_dists = dependency_closure(pyproject()["project"]["dependencies"])
    image, site = tmp / "image", tmp / "site"
    image.mkdir()
    site.mkdir()
    for package in [*product_packages(), "tests"]:
        (image / package).symlink_to(ROOT / package)
    for entry in site_packages().iterdir():
        name = entry.name
        if name.endswith(".pth"):
            continue
        if name.endswith((".dist-info", ".egg-info")):
            if canonicalize_name(name.split("-")[0]) not in image_dists:
                continue
        elif name.split(".")[0] in blocked:
            continue
        (site / name).symlink_to(entry)
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{image}:{site}", "PYTHONDONTWRITEBYTECODE": "1"}


def importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def torch_loaded() -> bool:
    return any(m is not None and (n == "torch" or n.startswith("torch.")) for n, m in sys.modules.items())


def import_every_module() -> dict[str, Any]:
    failed: dict[str, str] = {}
    for package in product_packages():
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as exc:
                failed[info.name] = str(exc.name)
    absent = {name: not importable(name) for name in ("torch", "implicit", "matplotlib", "tooling")}
    return {"failed": failed, "absent": absent, "torch_loaded": torch_loaded()}


def serve(artifact_dir: str) -> dict[str, Any]:
    from core.settings import ModelSettings
    from serving.model_loader import make_loader
    from tests.unit.test_serving_helpers import ADMIN, INGEST, harness, make_settings

    files = {p.name: p.read_bytes() for p in Path(artifact_dir).iterdir()}
    # A small exact-search threshold: the artifact gets the approximate (HNSW) index, as at production size.
    settings = make_settings().model_copy(update={"model": ModelSettings(exact_search_max_items=10)})
    statuses: dict[str, int] = {}
    with harness(with_model=False, loader=make_loader(settings)) as h:
        h.wait_for_version(h.publish(files))
        for path in ("/healthz", "/readyz", "/v1/users/nobody/recommendations", "/v1/popular", "/metrics"):
            statuses[path] = h.get(path, k=5).status_code
        statuses["/v1/items/i3/similar"] = h.get("/v1/items/i3/similar", k=5).status_code
        event = {"event_id": "e1", "event_type": "click", "user_id": "u1", "item_id": "i3", "timestamp": 1}
        resp = h.client.post("/v1/events", json=[event], headers={"X-API-Key": INGEST})
        statuses["POST /v1/events"] = resp.status_code
        resp = h.client.post("/v1/admin/retrain", json={"reason": "probe"}, headers={"X-API-Key": ADMIN})
        statuses["POST /v1/admin/retrain"] = resp.status_code
        # A user the model knows: ranked by the trained embeddings through FAISS.
        recs = h.recs("u1", k=5)
        index = h.client.app.state.holder.current.index  # type: ignore[attr-defined]
    reasons = sorted({item["reason"]["kind"] for item in recs["items"]})
    return {
        "statuses": statuses,
        "index": index,
        "model_version": recs["model_version"],
        "reasons": reasons,
        "n_items": len(recs["items"]),
        "torch_loaded": torch_loaded(),
    }


def factory() -> dict[str, Any]:
    """`streamrec serve`'s composition root (cli.serve.app_factory): Settings, the production clients
    (they connect in the background, so no server is needed to build them) and the app."""
    from cli.serve import app_factory

    app = app_factory()
    return {"routes": len(app.routes), "torch_loaded": torch_loaded()}


def run_cli(args: list[str]) -> None:
    from cli.main import main

    sys.argv = ["streamrec", *args]
    main()


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "modules":
        print(json.dumps(import_every_module()))
    elif mode == "serve":
        print(json.dumps(serve(rest[0])))
    elif mode == "factory":
        print(json.dumps(factory()))
    elif mode == "cli":
        run_cli(rest)
    else:
        raise SystemExit(f"unknown mode {mode}")
