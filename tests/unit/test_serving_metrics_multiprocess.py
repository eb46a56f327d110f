"""``streamrec serve --workers N``: the Prometheus multiprocess directory the workers share."""

from __future__ import annotations

import os
from pathlib import Path

from serving.metrics import MULTIPROC_ENV, prepare_multiprocess_dir


def test_one_worker_without_a_directory_stays_single_process() -> None:
    env: dict[str, str] = {}
    assert prepare_multiprocess_dir(1, env) == (None, False)
    assert env == {}


def test_several_workers_get_a_fresh_directory_of_their_own() -> None:
    env: dict[str, str] = {}
    path, ours = prepare_multiprocess_dir(2, env)
    try:
        assert ours and path is not None and env[MULTIPROC_ENV] == path
        assert os.path.isdir(path) and os.listdir(path) == []
    finally:
        if path is not None:
            os.rmdir(path)


def test_an_operators_directory_is_kept_but_earlier_counts_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "prom"
    target.mkdir()
    (target / "counter_123.db").write_bytes(b"old counts")
    (target / "notes.txt").write_text("not prometheus'")
    env = {MULTIPROC_ENV: str(target)}
    assert prepare_multiprocess_dir(4, env) == (str(target), False)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    missing = tmp_path / "new"
    assert prepare_multiprocess_dir(1, {MULTIPROC_ENV: str(missing)}) == (str(missing), False)
    assert missing.is_dir()
