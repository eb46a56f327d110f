"""``streamrec serve --workers N``: the Prometheus multiprocess directory the workers share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def test_multiprocess_exposition_keeps_the_pulled_counts_labelled_by_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from serving.metrics import ServingMetrics
    from storage.impression_log import ImpressionCounts

    metrics = ServingMetrics(CollectorRegistry())
    metrics.count_producer_rebuilds(lambda: 3)
    metrics.count_impressions(lambda: ImpressionCounts(queued=5, sent=4))
    assert metrics.exposition_registry() is metrics.registry  # single process: the app's registry
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    text = generate_latest(metrics.exposition_registry()).decode()
    pid = os.getpid()
    assert f'streamrec_serving_producer_rebuilds_total{{pid="{pid}"}} 3.0' in text
    assert f'streamrec_serving_impressions_sent_total{{pid="{pid}"}} 4.0' in text
    assert f'streamrec_serving_impressions_dropped_total{{pid="{pid}",reason="queue_full"}} 0.0' in text
