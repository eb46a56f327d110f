"""The retrain run's own report: wall time and peak RSS per stage."""

from __future__ import annotations

import time

import numpy as np

from retrain.stages import MIB, StageClock


def test_each_stage_gets_its_wall_time_and_its_own_peak() -> None:
    clock = StageClock()
    with clock.stage("big"):
        block = np.ones(300 * MIB // 8)  # 300 MiB touched
        time.sleep(0.05)
        del block
    with clock.stage("small"):
        time.sleep(0.02)
    with clock.stage("small"):
        time.sleep(0.02)
    big, small = clock.stages["big"], clock.stages["small"]
    assert big.wall_s >= 0.05 and small.wall_s >= 0.04  # a stage entered twice adds up
    assert big.peak_rss_bytes >= 300 * MIB
    assert clock.peak_rss_bytes == big.peak_rss_bytes
    if clock.rss_per_stage:  # Linux: the peak is reset at each stage's start
        assert small.peak_rss_bytes < big.peak_rss_bytes - 200 * MIB
    report = clock.report()
    assert list(report["stages"]) == ["big", "small"]
    assert report["stages"]["big"]["peak_rss_mib"] >= 300
    assert clock.wall_s("big", "small", "absent") == big.wall_s + small.wall_s
