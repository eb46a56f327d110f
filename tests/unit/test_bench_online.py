"""`bench online`'s pure parts: the A/B figures (read off the product's report), the degraded
model's permutation, the shoppers' events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from scipy import stats

from core.events import EventType, parse_interaction
from core.experiment_report import experiment_report
from core.experiments import Experiment, Variant
from core.settings import Settings
from tooling.bench.online import figures_from_report
from tooling.bench.online_latency import impressions_off
from tooling.bench.online_setup import PermutedItems, item_permutation
from tooling.bench.online_shoppers import Answer, api_settings, reaction_events, wait_count
from tooling.producers.simulator import Reaction

EXPERIMENT = Experiment(
    experiment_id="bench-online",
    variants=[
        Variant(name="control", share=0.5, model_version="1"),
        Variant(name="degraded", share=0.5, model_version="2"),
    ],
    control="control",
)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _impressions(variant: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"{variant}-{i}",
            "experiment_id": "bench-online",
            "variant": variant,
            "user_id": f"u{variant}{i}",
            "shadow": False,
            "ts": NOW,
            "items": [],
        }
        for i in range(n)
    ]


def _click(impression_id: str, variant: str, kind: str = "click") -> dict[str, Any]:
    return {
        "_id": f"e-{impression_id}-{kind}-{id(object())}",
        "event_type": kind,
        "ts": NOW,
        "attribution": {"impression_id": impression_id, "variant": variant, "by": "id", "position": 0},
    }


def _figures(imps: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    # The same report the admin API serves (GET /v1/admin/experiments/{id}), through its JSON form.
    shown = experiment_report(EXPERIMENT, imps, events, since=NOW, until=NOW).to_dict()
    return figures_from_report(orjson.loads(orjson.dumps(shown)), better="control")


def test_figures_are_the_product_reports_with_the_bench_keys() -> None:
    imps = _impressions("control", 1000) + _impressions("degraded", 1000)
    events = [_click(f"control-{i}", "control") for i in range(300)]
    events += [_click(f"control-{i}", "control") for i in range(50)]  # second clicks on the same lists
    events += [_click(f"degraded-{i}", "degraded") for i in range(100)]
    fig = _figures(imps, events)
    assert fig["ctr"] == {"control": 0.3, "degraded": 0.1}
    assert fig["impressions"] == {"control": 1000, "degraded": 1000}
    assert fig["clicks"] == {"control": 350, "degraded": 100}  # click events
    assert fig["lift"] == pytest.approx(0.1 / 0.3 - 1)
    # The pooled two-proportion z test equals the uncorrected chi-square test of the 2x2 table.
    expected_p = stats.chi2_contingency([[100, 900], [300, 700]], correction=False).pvalue
    assert fig["p_value"] == pytest.approx(expected_p, rel=1e-6)
    assert fig["winner"] == "control" and fig["detected"] is True
    low, high = fig["ctr_diff_ci95"]
    assert fig["ctr_diff"] == pytest.approx(-0.2) and low < -0.2 < high < 0
    assert fig["srm_p_value"] == pytest.approx(1.0)


def test_no_detection_when_the_difference_is_noise_or_the_worse_variant_wins() -> None:
    imps = _impressions("control", 200) + _impressions("degraded", 200)
    close = [_click(f"control-{i}", "control") for i in range(40)]
    close += [_click(f"degraded-{i}", "degraded") for i in range(44)]
    fig = _figures(imps, close)
    assert fig["p_value"] > 0.05 and fig["winner"] is None and fig["detected"] is False
    reverse = [_click(f"degraded-{i}", "degraded") for i in range(120)]
    fig = _figures(imps, reverse)
    assert fig["winner"] == "degraded" and fig["detected"] is False
    assert fig["lift"] is None  # the control's CTR is 0: no ratio


def test_sample_ratio_mismatch_is_reported_and_withholds_a_winner() -> None:
    imps = _impressions("control", 600) + _impressions("degraded", 400)
    events = [_click(f"control-{i}", "control") for i in range(300)]
    fig = _figures(imps, events)
    assert fig["srm_p_value"] < 1e-6
    assert fig["winner"] is None and fig["detected"] is False


# ---------------------------------------------------------------- the degraded model's data


def test_item_permutation_moves_every_item_and_keeps_the_set() -> None:
    items = [f"i{n}" for n in range(500)]
    mapping = item_permutation(items, seed=3)
    assert sorted(mapping) == sorted(items) and sorted(mapping.values()) == sorted(items)
    assert all(mapping[i] != i for i in items)
    assert mapping == item_permutation(items, seed=3) != item_permutation(items, seed=4)


class _Store:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def iter_events(
        self, since: Any, until: Any, exclude_users: Any, batch_size: int, fields: Any = None
    ) -> Any:
        self.fields = fields
        yield self.docs[:2]
        yield self.docs[2:]

    def erased_users(self) -> set[str]:
        return {"gone"}

    def count_events(self) -> int:
        return len(self.docs)


def test_permuted_source_renames_items_only() -> None:
    docs = [
        {"user_id": "u1", "item_id": "a", "event_type": "view", "ts_ms": 1},
        {"user_id": "u1", "item_id": "b", "event_type": "click", "ts_ms": 2},
        {"user_id": "u2", "item_id": "unknown", "event_type": "view", "ts_ms": 3},
    ]
    store = _Store(docs)
    source = PermutedItems(store, {"a": "b", "b": "a"})
    out = [d for batch in source.iter_events() for d in batch]
    assert [d["item_id"] for d in out] == ["b", "a", "unknown"]
    assert [(d["user_id"], d["event_type"], d["ts_ms"]) for d in out] == [
        (d["user_id"], d["event_type"], d["ts_ms"]) for d in docs
    ]
    assert docs[0]["item_id"] == "a"  # the stored documents are not changed
    assert source.erased_users() == {"gone"} and source.count_events() == 3
    # Retrain's projection reaches the store underneath.
    list(source.iter_events(fields=("user_id", "item_id")))
    assert store.fields == ("user_id", "item_id")


# ---------------------------------------------------------------- the shoppers


def test_reaction_events_carry_the_answer_and_position_and_parse() -> None:
    received = int(datetime(2026, 1, 5, 10, 0, tzinfo=UTC).timestamp() * 1000)
    answer = Answer.from_json(
        "u3",
        {
            "request_id": "req-1",
            "items": [{"item_id": "i9", "score": 1.0}, {"item_id": "i4", "score": 0.5}],
            "model_version": 7,
            "experiment_id": "bench-online",
            "variant": "control",
        },
        received,
    )
    assert (answer.item_ids, answer.model_version, answer.variant) == (["i9", "i4"], "7", "control")
    reactions = [
        Reaction(1, "i4", EventType.CLICK),
        Reaction(1, "i4", EventType.ADD_TO_CART),
        Reaction(0, "i9", EventType.CLICK),
    ]
    events = reaction_events(answer, reactions)
    assert [(e.event_type, e.item_id, e.position) for e in events] == [
        (EventType.CLICK, "i4", 1),
        (EventType.ADD_TO_CART, "i4", 1),
        (EventType.CLICK, "i9", 0),
    ]
    assert all(e.recommendation_id == "req-1" and e.user_id == "u3" for e in events)
    stamps = [int(e.timestamp.timestamp() * 1000) for e in events]
    assert stamps[0] > received and stamps == sorted(stamps)
    assert len({e.event_id for e in events}) == 3
    assert [e.event_id for e in reaction_events(answer, reactions)] == [e.event_id for e in events]
    for event in events:  # what the consumer receives parses back to the same event
        assert parse_interaction(event.to_json()) == event


def test_an_answer_without_request_id_is_a_clear_error() -> None:
    from core.errors import StreamrecError

    with pytest.raises(StreamrecError, match="request_id"):
        Answer.from_json("u1", {"items": []}, 0)


def test_wait_count_returns_when_reached_or_stalled() -> None:
    values = iter([1, 2, 5])
    assert wait_count(lambda: next(values), 5, settle_s=5, poll_s=0) == 5
    assert wait_count(lambda: 3, 5, settle_s=0.05, poll_s=0.01) == 3


def test_api_settings_add_an_admin_key_and_the_off_copy_only_turns_impressions_off() -> None:
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    on = api_settings(base, 18080, "secret-key")
    assert [k.get_secret_value() for k in on.serving.api_keys_admin] == ["secret-key"]
    assert on.serving.port == 18080 and on.serving.impressions.enabled is True
    off = impressions_off(on, 18081)
    assert off.serving.impressions.enabled is False and off.serving.port == 18081
    same = {"impressions", "port"}
    assert off.serving.model_dump(exclude=same) == on.serving.model_dump(exclude=same)
    assert off.model_dump(exclude={"serving"}) == on.model_dump(exclude={"serving"})


def test_p99_ratio_interval_resolves_a_shift_and_not_noise() -> None:
    from tooling.bench.online_latency import p99_ratio_ci95

    rng = np.random.default_rng(1)
    off = (20 + 5 * rng.standard_normal(16)).tolist()
    same = p99_ratio_ci95(off, [v * 1.0 for v in off])
    assert same == [1.0, 1.0]
    noisy = p99_ratio_ci95(off, (20 + 5 * rng.standard_normal(16)).tolist())
    assert noisy is not None and noisy[0] < 1.0 < noisy[1]
    slower = p99_ratio_ci95(off, [v * 1.5 for v in off])
    assert slower is not None and slower[0] > 1.1
    assert p99_ratio_ci95([10.0], [12.0]) is None
