"""core.online_report, core.experiment_report and core.shadow_report on hand-made documents."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.experiment_report import experiment_report
from core.experiments import Experiment, Variant, assign
from core.online_report import online_report
from core.online_stats import wilson_interval
from core.shadow_report import shadow_report, shadow_users
from tests.unit.online_fixtures import T0, event, impression

UNTIL = T0 + timedelta(days=1)


def rows_by_group(report: Any) -> dict[Any, dict[str, Any]]:
    return {(r["experiment_id"], r["group"]) if r["experiment_id"] else r["group"]: r for r in report.rows}


def test_rates_count_impressions_with_at_least_one_event() -> None:
    v1 = [impression(f"r{i}", f"u{i % 3}", version="1") for i in range(4)]
    v2 = [impression(f"s{i}", f"u{i}", version="2") for i in range(2)]
    events = [
        event("e1", v1[0]),  # two clicks on one list: one clicked impression, two clicks
        event("e2", v1[0], item="b"),
        event("e3", v1[1], "add_to_cart"),
        event("e4", v1[1], "purchase"),
        event("e5", v2[0]),
        event("e6", None),  # not attributed: ignored
        event("e7", v1[2], "view"),  # a view is not an outcome
    ]
    report = online_report([*v1, *v2], events, "model_version", T0, UNTIL)
    rows = rows_by_group(report)
    assert list(rows) == ["1", "2"]
    one = rows["1"]
    assert (one["impressions"], one["users"], one["clicks"], one["add_to_carts"], one["purchases"]) == (
        4,
        3,
        2,
        1,
        1,
    )
    assert one["ctr"] == 0.25 and one["add_to_cart_rate"] == 0.25 and one["conversion_rate"] == 0.25
    assert one["ctr_ci95"] == list(wilson_interval(1, 4))  # type: ignore[arg-type]
    assert rows["2"]["ctr"] == 0.5 and rows["2"]["conversion_rate"] == 0.0
    assert rows["2"]["conversion_rate_ci95"][0] == 0.0
    assert report.impressions == 6 and report.attributed_events == 5 and report.unmatched_events == 0
    assert report.to_dict()["rows"] == report.rows


def test_events_of_impressions_outside_the_window_count_as_unmatched() -> None:
    old = impression("old", minutes=-60 * 48)
    new = impression("new")
    report = online_report([new], [event("e1", old), event("e2", new)], "surface", T0, UNTIL)
    assert report.unmatched_events == 1
    assert report.rows == [rows_by_group(report)["recommendations"]]
    assert report.rows[0]["clicks"] == 1


def test_shadow_lists_are_never_counted() -> None:
    live, shadow = impression("r1"), impression("r1", shadow=True)
    report = online_report([live, shadow], [event("e1", live)], "surface", T0, UNTIL)
    assert report.impressions == 1 and report.rows[0]["ctr"] == 1.0


def test_group_by_variant_keeps_experiments_apart_and_puts_the_rest_last() -> None:
    docs = [
        impression("a1", experiment="exp-a", variant="control"),
        impression("a2", experiment="exp-a", variant="treatment"),
        impression("b1", experiment="exp-b", variant="control"),
        impression("n1"),
    ]
    report = online_report(docs, [event("e1", docs[1])], "variant", T0, UNTIL)
    keys = [(r["experiment_id"], r["group"]) for r in report.rows]
    assert keys == [("exp-a", "control"), ("exp-a", "treatment"), ("exp-b", "control"), (None, None)]
    assert report.rows[1]["ctr"] == 1.0 and report.rows[0]["ctr"] == 0.0


def test_group_by_position_counts_shown_items() -> None:
    lists = [impression(f"r{i}", items=("a", "b", "c") if i < 3 else ("a",)) for i in range(4)]
    events = [
        event("e1", lists[0], item="b"),
        event("e2", lists[1], item="b"),
        event("e3", lists[3], item="a"),
    ]
    report = online_report(lists, events, "position", T0, UNTIL)
    rows = rows_by_group(report)
    assert list(rows) == [0, 1, 2]
    assert rows[0]["impressions"] == 4 and rows[0]["clicks"] == 1 and rows[0]["ctr"] == 0.25
    assert rows[1]["impressions"] == 3 and rows[1]["clicks"] == 2 and rows[1]["ctr"] == pytest.approx(2 / 3)
    assert rows[2]["clicks"] == 0 and rows[2]["ctr"] == 0.0


def test_unknown_grouping_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        online_report([], [], "colour", T0, UNTIL)


# -- experiments ------------------------------------------------------------------------------------


def experiment(**extra: Any) -> Experiment:
    return Experiment(
        experiment_id="exp",
        variants=[
            Variant(name="control", share=0.5),
            Variant(name="treatment", share=0.5, model_version="7"),
        ],
        **extra,
    )


def traffic(exp: Experiment, users: int, ctr: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """One impression per user in their assigned variant; a click on the first ``ctr`` share of each."""
    imps: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    seen = dict.fromkeys(ctr, 0)
    for i in range(users):
        user = f"user-{i}"
        name = assign(exp, user).name
        imp = impression(f"req-{i}", user, experiment=exp.experiment_id, variant=name)
        imps.append(imp)
        seen[name] += 1
        # Deterministic clicks: exactly round(ctr * n) of the variant's first n impressions get one.
        per_mille = round(ctr[name] * 1000)
        if seen[name] * per_mille // 1000 > (seen[name] - 1) * per_mille // 1000:
            events.append(event(f"ev-{i}", imp))
    return imps, events


def test_experiment_report_names_a_significant_winner() -> None:
    exp = experiment()
    imps, events = traffic(exp, 4000, {"control": 0.10, "treatment": 0.14})
    report = experiment_report(exp, imps, events, since=T0, until=UNTIL)
    control, treatment = report.variants
    assert control["control"] and control["vs_control"] is None and not treatment["control"]
    assert control["users"] + treatment["users"] == 4000
    assert abs(control["ctr"] - 0.10) < 0.01 and abs(treatment["ctr"] - 0.14) < 0.01
    vs = treatment["vs_control"]["ctr"]
    assert vs["significant"] and vs["p_value"] < 0.05 and vs["ci95"][0] > 0 and vs["test"] == "z"
    assert report.srm_p_value is not None and report.srm_p_value > 0.001 and not report.srm_detected
    assert report.winner == "treatment" and "beats control on ctr" in report.verdict
    assert report.to_dict()["winner"] == "treatment"


def test_no_winner_without_a_significant_difference() -> None:
    exp = experiment()
    imps, events = traffic(exp, 400, {"control": 0.10, "treatment": 0.11})
    report = experiment_report(exp, imps, events, since=T0, until=UNTIL)
    assert report.winner is None and "no significant difference" in report.verdict
    assert not report.variants[1]["vs_control"]["ctr"]["significant"]


def test_control_wins_when_every_treatment_is_worse() -> None:
    exp = experiment()
    imps, events = traffic(exp, 4000, {"control": 0.14, "treatment": 0.08})
    report = experiment_report(exp, imps, events, since=T0, until=UNTIL)
    assert report.winner == "control" and "worse" in report.verdict


def test_sample_ratio_mismatch_withholds_the_winner() -> None:
    exp = experiment()
    imps, events = traffic(exp, 4000, {"control": 0.10, "treatment": 0.16})
    # Lose two thirds of the control's impressions (a logging bug): the split no longer matches 50/50.
    kept = [d for i, d in enumerate(imps) if d["variant"] == "treatment" or i % 3 == 0]
    report = experiment_report(exp, kept, events, since=T0, until=UNTIL)
    assert report.srm_detected and report.winner is None and "sample ratio mismatch" in report.verdict


def test_experiment_report_skips_other_experiments_and_counts_unknown_variants() -> None:
    exp = experiment()
    docs = [
        impression("x1", experiment="other", variant="control"),
        impression("x2", experiment="exp", variant="renamed"),
        impression("x3", experiment="exp", variant="control"),
        impression("x4", experiment="exp", variant="treatment", shadow=True),
    ]
    report = experiment_report(exp, docs, [], since=T0, until=UNTIL)
    assert report.unknown_variant_impressions == 1
    assert [v["impressions"] for v in report.variants] == [1, 0]
    assert report.variants[1]["vs_control"]["ctr"] is None  # no treatment impressions: nothing to compare
    empty = experiment_report(exp, [], [], since=T0, until=UNTIL)
    assert empty.srm_p_value is None and empty.winner is None and "no impressions" in empty.verdict
    with pytest.raises(ValueError, match="unknown metric"):
        experiment_report(exp, [], [], metric="revenue", since=T0, until=UNTIL)


def test_conversion_can_be_the_deciding_metric() -> None:
    exp = experiment()
    imps, _ = traffic(exp, 4000, {"control": 0.0, "treatment": 0.0})
    buys = [
        event(f"b{i}", d, "purchase")
        for i, d in enumerate(imps)
        if (d["variant"] == "treatment" and i % 10 == 0) or (d["variant"] == "control" and i % 25 == 0)
    ]
    report = experiment_report(exp, imps, buys, metric="conversion_rate", since=T0, until=UNTIL)
    assert report.winner == "treatment" and report.metric == "conversion_rate"
    assert experiment_report(exp, imps, buys, since=T0, until=UNTIL).winner is None  # no clicks at all


def test_several_treatments_are_judged_at_a_bonferroni_level() -> None:
    exp = Experiment(
        experiment_id="three",
        variants=[
            Variant(name="control", share=0.34),
            Variant(name="b", share=0.33, model_version="2"),
            Variant(name="c", share=0.33, model_version="3"),
        ],
    )
    imps, events = traffic(exp, 6000, {"control": 0.10, "b": 0.10, "c": 0.135})
    report = experiment_report(exp, imps, events, since=T0, until=UNTIL)
    c = report.variant("c")["vs_control"]["ctr"]  # type: ignore[index]
    assert report.winner == "c" and c["p_value"] < 0.05 / 2


# -- shadow -------------------------------------------------------------------------------------------


def test_shadow_report_pairs_each_shoppers_next_choice_with_both_lists() -> None:
    live, shadow = [], []
    for i, (live_items, shadow_items) in enumerate(
        [(("a", "b"), ("x", "y")), (("a", "b"), ("a", "y")), (("c",), ("x",)), (("a",), ("b",))]
    ):
        live.append(impression(f"r{i}", f"u{i}", live_items, version="1"))
        shadow.append(impression(f"r{i}", f"u{i}", shadow_items, version="9", shadow=True))
    next_events = [
        event("n0", None, "click", item="x", user="u0", minutes=2),  # only the shadow list had it
        event("n1", None, "purchase", item="a", user="u1", minutes=3),  # both had it
        event("n2", None, "view", item="c", user="u2", minutes=1),  # a view is not a choice
        event("n2b", None, "click", item="c", user="u2", minutes=45),  # after the 30-minute window
        event("n3", None, "click", item="z", user="u3", minutes=1),  # neither list
        event("n3b", None, "click", item="b", user="u3", minutes=2),  # not the next one: ignored
    ]
    by_user = shadow_users([*shadow, impression("anon", None, shadow=True)])
    assert set(by_user) == {"u0", "u1", "u2", "u3"}
    report = shadow_report(
        by_user, {d["_id"]: d for d in live}, next_events, window_s=1800, since=T0, until=UNTIL
    )
    out = report.to_dict()
    assert (out["shoppers"], out["pairs"], out["missing_live"]) == (4, 3, 0)
    assert (out["shadow_hits"], out["live_hits"]) == (2, 1)
    assert out["shadow_hit_rate"] == pytest.approx(2 / 3) and out["live_hit_rate"] == pytest.approx(1 / 3)
    assert out["difference"]["diff"] == pytest.approx(1 / 3) and out["difference"]["test"] == "mcnemar"
    assert out["shadow_versions"] == ["9"] and out["live_versions"] == ["1"]


def test_shadow_report_uses_the_shoppers_first_list_with_an_outcome_and_needs_the_live_list() -> None:
    first = impression("r1", "u1", ("a",), minutes=0, shadow=True)
    second = impression("r2", "u1", ("b",), minutes=60, shadow=True)
    lone = impression("r3", "u2", ("c",), minutes=0, shadow=True)  # its live list is not stored
    live = {"r1": impression("r1", "u1", ("b",)), "r2": impression("r2", "u1", ("b",), minutes=60)}
    events = [
        event("e1", None, item="b", user="u1", minutes=61),  # only after the second list
        event("e2", None, item="c", user="u2", minutes=1),
    ]
    report = shadow_report(
        shadow_users([first, second, lone]), live, events, window_s=1800, since=T0, until=UNTIL
    )
    assert (report.pairs, report.missing_live, report.shadow_hits, report.live_hits) == (1, 1, 1, 1)
    empty = shadow_report({}, {}, [], window_s=1800, since=T0, until=UNTIL).to_dict()
    assert empty["pairs"] == 0 and empty["shadow_hit_rate"] is None and empty["difference"] is None
