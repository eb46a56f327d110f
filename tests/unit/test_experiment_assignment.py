"""Experiments: stable assignment that honours the configured shares, and what an experiment accepts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.experiments import Experiment, Variant, assign, bucket, running_for

USERS = [f"user-{i}" for i in range(100_000)]


def _experiment(shares: list[float], experiment_id: str = "exp-1") -> Experiment:
    variants = [Variant(name=f"v{i}", share=s, model_version=str(i + 1)) for i, s in enumerate(shares)]
    return Experiment(experiment_id=experiment_id, variants=variants)


@pytest.mark.parametrize("shares", [[0.5, 0.5], [0.9, 0.1], [0.2, 0.3, 0.5]])
def test_assignment_matches_the_shares_over_100k_users(shares: list[float]) -> None:
    experiment = _experiment(shares)
    counts = Counter(assign(experiment, u).name for u in USERS)
    for i, share in enumerate(shares):
        observed = counts[f"v{i}"] / len(USERS)
        # 5 standard errors of a binomial proportion: a correct hash fails this about once in 3 million.
        tolerance = 5 * (share * (1 - share) / len(USERS)) ** 0.5
        assert abs(observed - share) <= tolerance, (shares, i, observed)


def test_assignment_is_stable_and_independent_between_experiments() -> None:
    a = _experiment([0.5, 0.5], "exp-a")
    b = _experiment([0.5, 0.5], "exp-b")
    first = [assign(a, u).name for u in USERS[:5000]]
    assert first == [assign(a, u).name for u in USERS[:5000]]
    # Rebuilt from its stored form (another replica, a restart): the same split.
    again = Experiment.model_validate(a.model_dump())
    assert first == [assign(again, u).name for u in USERS[:5000]]
    # A second experiment's split is not the first one's: about half the shoppers agree.
    agree = sum(x == assign(b, u).name for x, u in zip(first, USERS[:5000], strict=True))
    assert 2200 < agree < 2800


@given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
def test_bucket_is_in_the_unit_interval(experiment_id: str, user_id: str) -> None:
    assert 0.0 <= bucket(experiment_id, user_id) < 1.0


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}], "add up to 1"),
        ([{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], "unique"),
        ([{"name": "a", "share": 1.0}], "at least 2"),
        ([{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "overrides": {"k": 3}}], "not supported"),
        (
            [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "overrides": {"session_weight": 2}}],
            "must be a number in",
        ),
        ([{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "model_version": "x7"}], "pattern"),
    ],
)
def test_a_bad_experiment_is_refused_with_a_reason(variants: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Experiment(experiment_id="e", variants=variants)


def test_unknown_control_is_refused() -> None:
    with pytest.raises(ValidationError, match="control 'z' is not one of"):
        Experiment(
            experiment_id="e",
            variants=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
            control="z",
        )


def test_running_for_picks_the_newest_running_experiment_of_the_surface() -> None:
    old = _experiment([0.5, 0.5], "old").model_copy(update={"created_at": datetime(2026, 1, 1, tzinfo=UTC)})
    new = _experiment([0.5, 0.5], "new").model_copy(update={"created_at": datetime(2026, 2, 1, tzinfo=UTC)})
    stopped = new.model_copy(update={"experiment_id": "stopped", "status": "stopped"})
    assert running_for([old, new, stopped], "recommendations") is new
    assert running_for([old, stopped], "recommendations") is old
    assert running_for([old, new], "similar") is None
    assert old.control_variant.name == "v0"
