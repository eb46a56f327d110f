"""The recent-member format (core.recent): one encoder, one decoder."""

from __future__ import annotations

import orjson
import pytest

from core.recent import RecentEvent, parse_recent, recent_member


def test_round_trip_with_and_without_value():
    plain = recent_member("e1", "i1", "view")
    assert orjson.loads(plain) == {"e": "e1", "i": "i1", "t": "view"}  # the format written before values
    assert parse_recent(plain, 1_000.0) == RecentEvent("e1", "i1", "view", 1_000, None)
    rated = recent_member("e2", "i2", "rate", 4.5)
    assert orjson.loads(rated) == {"e": "e2", "i": "i2", "t": "rate", "v": 4.5}
    assert parse_recent(rated.encode(), 2_000.0) == RecentEvent("e2", "i2", "rate", 2_000, 4.5)


@pytest.mark.parametrize(
    "member",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"e": "x"}',
        b'{"e": "x", "i": "y"}',
        b'{"e":"x","i":"y","t":"v","v":"a"}',
    ],
)
def test_what_is_not_a_member_decodes_to_none(member: bytes):
    assert parse_recent(member, 1.0) is None
