"""The lean serving image can start: with only what it installs (no torch, no benchmark or dev
libraries, no tooling/), every product module but the trainer's imports, the serving app serves a model
trained by the product's trainer, and `streamrec retrain` says clearly that the image lacks PyTorch.

No Docker engine runs here: ``tests.unit.lean_image`` rebuilds the image's importable world from this
environment (see its docstring) and each check runs in a subprocess inside it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.lean_image import blocked_modules, lean_tree

# The only product modules that need torch: training. A new one is a deliberate choice (it must not be
# on serving's path), so it is added here by hand.
TRAINING_MODULES = {
    "model.content_ranking",
    "model.lae",
    "model.pipeline",
    "retrain.model_adapter",
    "retrain.tuning",
}


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("lean-image")
    return root / "image", lean_tree(root)


def run(lean: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    image, env = lean
    # -S: no site-packages and no .pth hooks (an editable install would put the whole repo on the path).
    return subprocess.run(
        [sys.executable, "-S", "-m", "tests.unit.lean_image", *args],
        cwd=image,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def probe(lean: tuple[Path, dict[str, str]], *args: str) -> dict[str, Any]:
    done = run(lean, *args)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_the_image_lacks_torch_the_extras_and_tooling_but_not_what_serving_needs() -> None:
    blocked = set(blocked_modules())
    assert {"torch", "implicit", "matplotlib", "tooling", "pytest"} <= blocked
    assert not blocked & {
        "numpy",
        "scipy",
        "faiss",
        "fastapi",
        "uvicorn",
        "pymongo",
        "redis",
        "confluent_kafka",
    }


def test_every_product_module_but_training_imports_without_torch(lean: tuple[Path, dict[str, str]]) -> None:
    assert importlib.util.find_spec("torch") is not None, "this environment has torch; the probe must not"
    result = probe(lean, "modules")
    assert result["absent"] == {"torch": True, "implicit": True, "matplotlib": True, "tooling": True}
    assert result["failed"] == dict.fromkeys(TRAINING_MODULES, "torch")
    assert result["torch_loaded"] is False


def trained_artifact(directory: Path) -> Path:
    """A model from the product's trainer (the one retrain runs), as retrain publishes its files."""
    from model.interactions import build_interactions
    from model.lae import TrainConfig
    from model.pipeline import train_artifact

    rng = np.random.default_rng(7)
    events = []
    for u in range(60):
        for j, i in enumerate(rng.choice(np.arange(u % 4, 48, 4), size=8, replace=False).tolist()):
            events.append((f"u{u}", f"i{i}", "view", None, 1_000 * u + j))
    config = TrainConfig(factors=8, reg=5.0, device="cpu")
    artifact = train_artifact(build_interactions(events), config, version=1, exact_max_items=1000)
    directory.mkdir()
    for name, data in artifact.to_files().items():
        (directory / name).write_bytes(data)
    return directory


def test_the_serving_app_serves_a_trained_model_without_torch(
    lean: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    result = probe(lean, "serve", str(trained_artifact(tmp_path / "artifact")))
    assert result["statuses"] == {
        "/healthz": 200,
        "/readyz": 200,
        "/v1/users/nobody/recommendations": 200,
        "/v1/popular": 200,
        "/metrics": 200,
        "/v1/items/i3/similar": 200,
        "POST /v1/events": 202,
        "POST /v1/admin/retrain": 202,
    }
    assert result["index"] == "hnsw" and result["model_version"] == "1"
    assert result["reasons"] == ["personalized"] and result["n_items"] == 5
    assert result["torch_loaded"] is False


def test_the_serve_commands_composition_root_builds_without_torch(lean: tuple[Path, dict[str, str]]) -> None:
    result = probe(lean, "factory")
    assert result["routes"] > 0 and result["torch_loaded"] is False


def test_retrain_in_the_lean_image_says_it_lacks_torch(lean: tuple[Path, dict[str, str]]) -> None:
    done = run(lean, "cli", "retrain", "--once")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: `streamrec retrain` trains models with PyTorch")
    assert "pip install 'streamrec[train]'" in done.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "--help"], ["consume", "--help"], ["model", "--help"]]
)
def test_the_cli_starts_in_the_lean_image(lean: tuple[Path, dict[str, str]], args: list[str]) -> None:
    done = run(lean, "cli", *args)
    assert done.returncode == 0, done.stderr
    if args == ["--help"]:
        for command in ("serve", "consume", "retrain", "model"):
            assert command in done.stdout
        assert "bench" not in done.stdout and "devstack" not in done.stdout
