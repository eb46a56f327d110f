"""The pure parts of `streamrec bench serve`: the Zipf user table, the ratios, recall, the event source."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tooling.bench.serve_load import (
    hit_ratio,
    parse_cache_counts,
    rate_ratio,
    read_zipf_table,
    write_zipf_table,
    zipf_cdf,
    zipf_rank,
    zipf_script,
)
from tooling.bench.serve_trained import exact_top_k, recall_at_k
from tooling.bench.sim_events import CompactEvents, MemoryEventSource


def test_zipf_cdf_is_the_normalised_power_law() -> None:
    cdf = zipf_cdf(4, 1.0)
    weights = np.array([1, 1 / 2, 1 / 3, 1 / 4])
    assert np.allclose(cdf, np.cumsum(weights) / weights.sum())
    assert cdf[-1] == 1.0
    assert np.allclose(zipf_cdf(5, 0.0), [0.2, 0.4, 0.6, 0.8, 1.0])  # s = 0 is uniform
    with pytest.raises(ValueError):
        zipf_cdf(0, 1.1)
    with pytest.raises(ValueError):
        zipf_cdf(3, -1.0)


def test_zipf_rank_is_the_first_rank_reaching_the_draw() -> None:
    cdf = [0.5, 0.75, 1.0]
    assert [zipf_rank(cdf, u) for u in (0.0, 0.5, 0.5001, 0.75, 0.9, 0.999999)] == [0, 0, 1, 1, 2, 2]
    assert zipf_rank(cdf, 1.0) == 2  # never past the last user


def test_zipf_draws_follow_the_exponent() -> None:
    n, s = 1000, 1.1
    cdf = zipf_cdf(n, s).tolist()
    rng = random.Random(3)
    counts = np.bincount([zipf_rank(cdf, rng.random()) for _ in range(200_000)], minlength=n)
    expected = np.arange(1, n + 1, dtype=float) ** -s
    expected /= expected.sum()
    # The head, where counts are large: within a few percent of the law.
    assert np.allclose(counts[:5] / counts.sum(), expected[:5], rtol=0.05)
    assert counts[0] / counts[1] == pytest.approx(2**s, rel=0.05)


def test_the_table_round_trips_and_the_lua_script_reads_it(tmp_path: Path) -> None:
    path = write_zipf_table(tmp_path / "users.txt", ["u7", "u3", "u9"], 1.1)
    cdf, ids = read_zipf_table(path)
    assert ids == ["u7", "u3", "u9"]
    assert cdf == zipf_cdf(3, 1.1).tolist()  # repr round-trips floats exactly
    script = zipf_script(path, salt=4)
    assert f'io.lines("{path}")' in script and "os.time() + 4" in script and "WRKJSON" in script


def test_ratios() -> None:
    assert hit_ratio((10.0, 30.0), (40.0, 40.0)) == pytest.approx(30 / 40)
    assert hit_ratio((5.0, 5.0), (5.0, 5.0)) is None  # no lookups: no ratio, not 0
    assert hit_ratio((0.0, 0.0), (0.0, 12.0)) == 0.0
    assert rate_ratio(1500.0, 3000.0) == 0.5
    assert rate_ratio(1500.0, 0.0) is None


def test_the_search_bound_adds_one_search_to_healthz_time_per_request() -> None:
    from tooling.bench.serve import search_bound

    # 4,000 healthz/s is 250 us a request; with a 750 us search at best 1,000 requests/s: 0.25.
    assert search_bound(4000.0, 750.0) == 0.25
    assert search_bound(4000.0, None) is None and search_bound(0.0, 750.0) is None


def test_cache_counts_are_read_from_the_exposition() -> None:
    text = (
        "# HELP streamrec_serving_cache_hits_total Recommendation results served from the cache\n"
        "# TYPE streamrec_serving_cache_hits_total counter\n"
        "streamrec_serving_cache_hits_total 42.0\n"
        "streamrec_serving_cache_hits_created 1.7e9\n"
        "streamrec_serving_cache_misses_total 8.0\n"
    )
    assert parse_cache_counts(text) == (42.0, 8.0)
    assert parse_cache_counts("") == (0.0, 0.0)


def test_recall_at_k() -> None:
    assert recall_at_k([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]]) == pytest.approx(0.75)
    assert recall_at_k([["b", "a"]], [["a", "b"]]) == 1.0  # order does not matter
    assert recall_at_k([["a"], []], [["a"], []]) == 1.0  # an empty truth is skipped
    assert np.isnan(recall_at_k([], []))


def test_exact_top_k_scores_every_item() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    top = exact_top_k(users, items, 5, chunk=64)
    truth = np.argsort(-(users @ items.T), axis=1, kind="stable")[:, :5]
    assert (top == truth).all()


def test_the_memory_source_reads_a_window_as_the_event_store_does() -> None:
    def event(user: str, ts_s: int) -> tuple[str, str, str, float | None, int]:
        return (user, "i", "view", None, ts_s * 1000)

    rows = [event("a", 10), event("b", 20), event("a", 30), event("c", 40)]
    source = MemoryEventSource(CompactEvents.from_rows(rows))
    since, until = datetime.fromtimestamp(20, UTC), datetime.fromtimestamp(40, UTC)
    batches = list(source.iter_events(since, until, exclude_users={"b"}, batch_size=1))
    assert [[e["ts_ms"] for e in b] for b in batches] == [[30_000]]  # since <= ts < until
    assert sum(len(b) for b in source.iter_events(batch_size=3)) == 4
    first = next(source.iter_events())[0]
    assert first == {"user_id": "a", "item_id": "i", "event_type": "view", "value": None, "ts_ms": 10_000}
    assert source.count_events() == 4 and source.erased_users() == set()


def test_compact_events_keep_every_field_and_count_items() -> None:
    rows = [("u1", "i1", "view", None, 5), ("u2", "i1", "rate", 4.5, 6), ("u1", "i2", "purchase", None, 7)]
    events = CompactEvents.from_rows(rows)
    back = [e for batch in MemoryEventSource(events).iter_events() for e in batch]
    assert [(e["user_id"], e["item_id"], e["event_type"], e["value"], e["ts_ms"]) for e in back] == rows
    assert events.item_counts() == {"i1": 2, "i2": 1} and len(events) == 3
