from __future__ import annotations

import pytest

from core.errors import ConfigError
from retrain.duration import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("45", 45.0),
        ("1.5h", 5400.0),
        (" 5m ", 300.0),
    ],
)
def test_parses_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "-5m", "0s", "1h30m", "fifteen"])
def test_refuses_bad_durations_with_a_clear_message(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_the_since_query_parameter_accepts_exactly_its_documented_pattern() -> None:
    from core.duration import parse_window

    assert parse_window("24h") == 86400.0 and parse_window("0") == 0.0 and parse_window("1.5m") == 90.0
    assert parse_window("5m\n") == 300.0  # what a JSON-schema validator's re.search admits
    for bad in (" 5m", "5 m", "-1h", "1e3", "", "1h30m"):
        with pytest.raises(ConfigError, match="duration"):
            parse_window(bad)
