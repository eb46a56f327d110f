"""The one event-weight rule (core.event_weights) and its three users agreeing on it."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from consumer.plans import PlannedEvent, plan_events
from core.event_weights import event_weight
from core.keys import Keys
from core.recent import parse_recent
from core.settings import EventWeights
from model.interactions import build_interactions
from serving.ranking import session_pairs

W = EventWeights()
NOW_S = 1_700_000_000.0


def test_rate_weight_is_rate_times_value():
    assert event_weight("rate", 4.5, W) == pytest.approx(4.5)
    assert event_weight("rate", 4.0, EventWeights(rate=0.5)) == pytest.approx(2.0)
    assert event_weight("add_to_cart", None, W) == 3.0


def test_weights_come_from_settings_and_only_rate_reads_the_value():
    custom = EventWeights(view=0.25, purchase=9.0)
    assert event_weight("view", None, custom) == 0.25
    assert event_weight("purchase", 3.0, custom) == 9.0  # a purchase's value is not a rating
    assert event_weight("click", 7.0, custom) == W.click


def test_rate_without_value_and_unknown_types_weigh_nothing():
    assert event_weight("rate", None, W) == 0.0
    assert event_weight("share", None, W) == 0.0
    # Attribute names of the settings model are not event types.
    assert event_weight("model_config", None, W) == 0.0
    assert event_weight("model_dump", None, W) == 0.0


@pytest.mark.parametrize(
    ("etype", "value"),
    [("view", None), ("purchase", None), ("add_to_cart", 2.0), ("rate", 4.5), ("rate", 0.5)],
)
def test_consumer_model_and_serving_weigh_an_event_alike(etype: str, value: float | None):
    weights = EventWeights(view=0.5, purchase=7.0, add_to_cart=2.5, rate=1.5)
    want = event_weight(etype, value, weights)
    keys = Keys("t:")
    event = PlannedEvent("e1", "u1", "i1", etype, int(NOW_S * 1000), value)
    ops = plan_events(keys, [event], weights=weights, recent_max=5, now_s=NOW_S)

    # consumer: the all-time popularity increment
    (incr,) = [op for op in ops if op.name == "zincrby" and op.key == keys.pop_all()]
    assert incr.args == ("i1", pytest.approx(want))

    # model: the training matrix entry
    matrix = build_interactions([("u1", "i1", etype, value, 0)], weights).matrix
    assert matrix[0, 0] == pytest.approx(want)

    # serving: the session weight of the member the consumer wrote, read back by serving's decoder
    (zadd,) = [op for op in ops if op.name == "zadd"]
    recent = parse_recent(zadd.args[0], zadd.args[1])
    assert recent is not None
    assert dict(session_pairs([recent], weights)) == {"i1": pytest.approx(want)}


def test_serving_session_honours_the_rating():
    weights = EventWeights()
    liked = parse_recent(orjson.dumps({"e": "a", "i": "liked", "t": "rate", "v": 5.0}), 2)
    meh = parse_recent(orjson.dumps({"e": "b", "i": "meh", "t": "rate", "v": 1.0}), 1)
    assert liked is not None and meh is not None
    pairs = dict(session_pairs([meh, liked], weights))  # newest first: the low rating is newer
    assert pairs["liked"] > pairs["meh"]
    assert math.isclose(pairs["liked"], 5.0 * 0.8)  # one position older: RECENCY_DECAY once


def test_model_skips_events_that_weigh_nothing():
    inter = build_interactions(
        [("u", "a", "view", None, 1), ("u", "b", "share", None, 2), ("u", "c", "rate", None, 3)]
    )
    assert inter.item_ids.tolist() == ["a"]
    assert np.allclose(inter.matrix.toarray(), [[1.0]])


def test_the_vectorised_rule_is_the_same_rule():
    from core.event_weights import event_weights

    custom = EventWeights(view=0.25, purchase=9.0, rate=0.5)
    types = np.array(["view", "rate", "purchase", "rate", "unknown", "add_to_cart", "rate"])
    values = np.array([3.0, 4.0, np.nan, np.nan, 1.0, np.nan, -2.0])
    got = event_weights(types, values, custom)
    want = [
        event_weight(str(t), None if math.isnan(v) else float(v), custom)
        for t, v in zip(types, values, strict=True)
    ]
    assert got.tolist() == want
    assert event_weights(np.array([], dtype=str), np.array([]), W).tolist() == []
