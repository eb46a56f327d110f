"""core.attribution: by id, by window, and every way an impression does not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.attribution import BY_ID, BY_WINDOW, RecentIndex, attribute, to_ms, window_start
from core.events import EventType, InteractionEvent
from core.impressions import Impression, ShownItem, impression_document

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW_S = 1800.0
TYPES = ("click", "add_to_cart", "purchase")


def imp(
    iid: str,
    *,
    user: str | None = "u1",
    items: tuple[str, ...] = ("i1", "i2", "i3"),
    at: timedelta = timedelta(0),
    shadow: bool = False,
    model_version: str | None = "7",
    variant: str | None = "control",
) -> dict[str, Any]:
    return impression_document(
        Impression(
            impression_id=iid,
            request_id=iid.removesuffix(":shadow"),
            user_id=user,
            surface="recommendations",
            model_version=model_version,
            experiment_id="exp1" if variant else None,
            variant=variant,
            items=[ShownItem(item_id=i, position=n) for n, i in enumerate(items)],
            ts=T0 + at,
            shadow=shadow,
        ),
        ingested_at=T0,
    )


def ev(
    *,
    etype: str = "click",
    user: str = "u1",
    item: str = "i2",
    at: timedelta = timedelta(minutes=5),
    rec: str | None = None,
    position: int | None = None,
) -> InteractionEvent:
    return InteractionEvent(
        event_id="e1",
        event_type=EventType(etype),
        user_id=user,
        item_id=item,
        timestamp=T0 + at,
        recommendation_id=rec,
        position=position,
    )


def run(event: InteractionEvent, impressions: list[dict[str, Any]], window_s: float = WINDOW_S) -> Any:
    by_id = {d["_id"]: d for d in impressions}
    return attribute(
        event,
        by_id=by_id,
        recent=RecentIndex.build(impressions),
        window_s=window_s,
        event_types=TYPES,
    )


def test_by_id_takes_the_position_from_the_impression_when_the_event_has_none() -> None:
    got = run(ev(rec="r1"), [imp("r1")])
    assert got == {
        "impression_id": "r1",
        "by": BY_ID,
        "surface": "recommendations",
        "model_version": "7",
        "experiment_id": "exp1",
        "variant": "control",
        "position": 1,
        "impression_ts": T0,
    }


def test_by_id_keeps_the_events_position_and_ignores_the_window() -> None:
    got = run(ev(rec="r1", position=4, at=timedelta(days=2)), [imp("r1")])
    assert got is not None and (got["by"], got["position"]) == (BY_ID, 4)


def test_by_id_wins_over_a_newer_impression_in_the_window() -> None:
    got = run(ev(rec="old", at=timedelta(minutes=10)), [imp("old"), imp("newer", at=timedelta(minutes=9))])
    assert got is not None and (got["impression_id"], got["by"]) == ("old", BY_ID)


def test_by_id_accepts_an_anonymous_list() -> None:
    got = run(ev(rec="anon"), [imp("anon", user=None)])
    assert got is not None and (got["impression_id"], got["by"]) == ("anon", BY_ID)


def test_an_id_that_does_not_count_falls_back_to_the_window() -> None:
    live = imp("live", at=timedelta(minutes=1))
    for named in (
        imp("r1", user="u2"),  # another shopper's list
        imp("r1", shadow=True),  # a shadow list is never credited
        imp("r1", items=("i9",)),  # the list did not show the item
    ):
        got = run(ev(rec="r1"), [named, live])
        assert got is not None and (got["impression_id"], got["by"]) == ("live", BY_WINDOW), named
    # Unknown id (expired, or not stored yet) and nothing in the window: not attributed.
    assert run(ev(rec="gone"), []) is None


def test_by_window_takes_the_newest_impression_that_showed_the_item() -> None:
    impressions = [
        imp("a", at=timedelta(minutes=0)),
        imp("b", at=timedelta(minutes=3), items=("i2", "i1")),
        imp("c", at=timedelta(minutes=4), items=("i7",)),  # newer, but did not show i2
    ]
    got = run(ev(at=timedelta(minutes=5), position=9), impressions)
    assert got is not None
    # The position is the item's in the impression found, not the event's.
    assert (got["impression_id"], got["by"], got["position"]) == ("b", BY_WINDOW, 0)


def test_window_bounds_are_inclusive_and_future_impressions_never_count() -> None:
    shown = imp("r1")
    assert run(ev(at=timedelta(seconds=WINDOW_S)), [shown]) is not None
    assert run(ev(at=timedelta(seconds=WINDOW_S, milliseconds=1)), [shown]) is None
    assert run(ev(at=timedelta(0)), [shown]) is not None
    assert run(ev(at=timedelta(milliseconds=-1)), [shown]) is None  # shown after the click


def test_outside_the_window_an_older_impression_does_not_count_either() -> None:
    impressions = [imp("old", at=timedelta(hours=-3)), imp("older", at=timedelta(hours=-4))]
    assert run(ev(at=timedelta(minutes=5)), impressions) is None


def test_window_ignores_shadow_other_users_and_anonymous_lists() -> None:
    impressions = [
        imp("r1:shadow", shadow=True),
        imp("r2", user="u2"),
        imp("r3", user=None),
    ]
    assert run(ev(), impressions) is None


def test_only_configured_event_types_are_attributed() -> None:
    shown = [imp("r1")]
    assert run(ev(etype="view", rec="r1"), shown) is None
    assert run(ev(etype="favorite"), shown) is None
    for etype in TYPES:
        assert run(ev(etype=etype), shown) is not None, etype


def test_ties_go_to_the_highest_impression_id() -> None:
    got = run(ev(), [imp("r-a"), imp("r-c"), imp("r-b")])
    assert got is not None and got["impression_id"] == "r-c"


def test_index_keeps_only_the_pairs_asked_for() -> None:
    index = RecentIndex.build([imp("r1"), imp("r2", user="u2")], pairs={("u1", "i2")})
    assert set(index.by_pair) == {("u1", "i2")}


def test_to_ms_is_exact_and_treats_naive_times_as_utc() -> None:
    ts = datetime(2024, 5, 1, 12, 0, 0, 123999, tzinfo=UTC)
    assert to_ms(ts) == 1_714_564_800_123
    assert to_ms(ts.replace(tzinfo=None)) == to_ms(ts)


@settings(max_examples=200, deadline=None)
@given(
    shown=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2"]),  # owner
            st.integers(-4000, 4000),  # seconds from T0
            st.booleans(),  # shadow
            st.sets(st.sampled_from(["i1", "i2", "i3"]), min_size=1),
        ),
        max_size=12,
    ),
    event_s=st.integers(-1000, 5000),
)
def test_window_matches_a_brute_force_reading_of_the_rule(shown: list[Any], event_s: int) -> None:
    impressions = [
        imp(f"r{n:02d}", user=u, at=timedelta(seconds=s), shadow=sh, items=tuple(sorted(items)))
        for n, (u, s, sh, items) in enumerate(shown)
    ]
    event = ev(at=timedelta(seconds=event_s))
    got = run(event, impressions)
    eligible = [
        d
        for d in impressions
        if d["user_id"] == "u1"
        and not d["shadow"]
        and "i2" in d["item_ids"]
        and 0 <= to_ms(event.timestamp) - to_ms(d["ts"]) <= WINDOW_S * 1000
    ]
    if not eligible:
        assert got is None
    else:
        best = max(eligible, key=lambda d: (d["ts"], d["_id"]))
        assert got is not None and (got["impression_id"], got["by"]) == (best["_id"], BY_WINDOW)
        assert got["position"] == best["item_ids"].index("i2")


def test_window_start_reaches_an_impression_exactly_one_window_earlier() -> None:
    event_ts = T0 + timedelta(seconds=WINDOW_S, microseconds=456)
    start = window_start(event_ts, WINDOW_S)
    assert start <= T0 and to_ms(start) == to_ms(T0)
    assert run(ev(at=timedelta(seconds=WINDOW_S, microseconds=456)), [imp("r1")]) is not None
