"""The impression record: what serving produces and the consumer parses, and its stored form."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from core.events import ParseError, parse_interaction
from core.impressions import Impression, ShownItem, impression_document, parse_impression, shadow_id

TS = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _impression(**overrides: object) -> Impression:
    fields: dict[str, object] = {
        "impression_id": "req-1",
        "request_id": "req-1",
        "user_id": "u1",
        "surface": "recommendations",
        "model_version": "3",
        "experiment_id": "exp",
        "variant": "control",
        "items": [ShownItem(item_id="i1", position=0, reason="personal", score=0.5)],
        "ts": TS,
    }
    fields.update(overrides)
    return Impression.model_validate(fields)


def test_round_trip_through_kafka_bytes() -> None:
    imp = _impression()
    assert parse_impression(imp.to_json()) == imp
    assert imp.key == b"u1"
    assert _impression(user_id=None, surface="similar", anchor_item_id="i9").key == b"i9"


def test_stored_document_indexes_the_shown_items() -> None:
    doc = impression_document(_impression(), ingested_at=TS)
    assert doc["_id"] == "req-1"
    assert doc["item_ids"] == ["i1"]
    assert doc["items"] == [{"item_id": "i1", "position": 0, "reason": "personal", "score": 0.5}]
    assert doc["shadow"] is False


def test_shadow_ids_never_collide_with_live_ones() -> None:
    assert shadow_id("req-1") == "req-1:shadow" != "req-1"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, "missing_field"),
        (b"{", "bad_json"),
        (b"[1]", "not_object"),
        (orjson.dumps({"impression_id": "x"}), "invalid_value"),
        (orjson.dumps({**orjson.loads(_impression().to_json()), "surface": "nope"}), "invalid_value"),
        (
            orjson.dumps(
                {**orjson.loads(_impression().to_json()), "items": [{"item_id": "a", "position": -1}]}
            ),
            "invalid_value",
        ),
        (b"x" * 300_000, "oversized"),
    ],
)
def test_bad_impressions_get_a_code_and_a_reason(raw: bytes | None, code: str) -> None:
    parsed = parse_impression(raw)
    assert isinstance(parsed, ParseError)
    assert parsed.code == code and parsed.reason


def test_events_may_carry_a_recommendation_id_and_position() -> None:
    base = {"event_id": "e1", "event_type": "click", "user_id": "u1", "item_id": "i1", "timestamp": 1}
    event = parse_interaction(orjson.dumps({**base, "recommendation_id": "req-1", "position": 3}))
    assert not isinstance(event, ParseError)
    assert (event.recommendation_id, event.position) == ("req-1", 3)
    assert orjson.loads(event.to_json())["position"] == 3
    # Schema v1 stays compatible: both optional.
    plain = parse_interaction(orjson.dumps(base))
    assert not isinstance(plain, ParseError) and plain.recommendation_id is None
    for bad, code in [
        ({"position": -1}, "invalid_value"),
        ({"position": "2"}, "wrong_type"),
        ({"position": True}, "wrong_type"),
        ({"recommendation_id": ""}, "invalid_value"),
    ]:
        parsed = parse_interaction(orjson.dumps({**base, **bad}))
        assert isinstance(parsed, ParseError), bad
        assert parsed.code == code, (bad, parsed)
