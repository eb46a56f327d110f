"""core.late_attribution: what an impression stored after an event changes, and the scope to query."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.attribution import BY_ID, BY_WINDOW, RecentIndex, attribute
from core.events import EventType, InteractionEvent
from core.impressions import Impression, ShownItem
from core.late_attribution import AttributionUpdate, late_scope, late_updates
from tests.unit.test_attribution import T0, TYPES, WINDOW_S, imp


def stored(
    *,
    etype: str = "click",
    user: str = "u1",
    item: str = "i2",
    at: timedelta = timedelta(minutes=5),
    rec: str | None = None,
    position: int | None = None,
    attribution: dict[str, Any] | None = None,
    eid: str = "e1",
) -> dict[str, Any]:
    """A stored event document as ``EventStore.late_attribution_candidates`` returns it."""
    doc: dict[str, Any] = {
        "_id": eid,
        "user_id": user,
        "item_id": item,
        "event_type": etype,
        "ts": T0 + at,
        "recommendation_id": rec,
        "position": position,
    }
    if attribution is not None:
        doc["attribution"] = attribution
    return doc


def credit(impressions: list[dict[str, Any]], event: dict[str, Any]) -> dict[str, Any] | None:
    """What the rules say for ``event`` with every impression stored first (the reference)."""
    return attribute(
        InteractionEvent(
            event_id=event["_id"],
            event_type=EventType(event["event_type"]),
            user_id=event["user_id"],
            item_id=event["item_id"],
            timestamp=event["ts"],
            recommendation_id=event["recommendation_id"],
            position=event["position"],
        ),
        by_id={d["_id"]: d for d in impressions},
        recent=RecentIndex.build(impressions),
        window_s=WINDOW_S,
        event_types=TYPES,
    )


def late(impressions: list[dict[str, Any]], *events: dict[str, Any]) -> list[AttributionUpdate]:
    return late_updates(
        events,
        by_id={d["_id"]: d for d in impressions},
        recent=RecentIndex.build(impressions),
        window_s=WINDOW_S,
        event_types=TYPES,
    )


def test_an_unattributed_click_naming_the_late_impression_is_credited_by_id() -> None:
    (update,) = late([imp("r1")], stored(rec="r1", position=4))
    assert (update.event_id, update.event_type, update.expected, update.change) == (
        "e1",
        "click",
        None,
        "new",
    )
    assert update.attribution == credit([imp("r1")], stored(rec="r1", position=4))
    assert (update.attribution["by"], update.attribution["position"]) == (BY_ID, 4)


def test_a_click_without_an_id_is_credited_by_window() -> None:
    (update,) = late([imp("r1", items=("i9", "i2"))], stored())
    assert update.change == "new"
    assert (update.attribution["impression_id"], update.attribution["by"]) == ("r1", BY_WINDOW)
    assert update.attribution["position"] == 1


def test_a_window_credit_is_upgraded_when_the_named_impression_arrives() -> None:
    older = imp("w", at=timedelta(minutes=1))
    current = credit([older], stored(rec="r1"))
    assert current is not None and current["by"] == BY_WINDOW
    (update,) = late([older, imp("r1", at=timedelta(minutes=-1))], stored(rec="r1", attribution=current))
    assert (update.attribution["impression_id"], update.attribution["by"]) == ("r1", BY_ID)
    assert (update.expected, update.change) == ("w", "upgraded")


def test_a_window_credit_moves_to_a_newer_impression_that_showed_the_item() -> None:
    older, newer = imp("a", at=timedelta(minutes=1)), imp("b", at=timedelta(minutes=2))
    current = credit([older], stored())
    (update,) = late([older, newer], stored(attribution=current))
    assert (update.attribution["impression_id"], update.expected, update.change) == ("b", "a", "moved")
    # ... but never to an older one (the credited impression expired from the store meanwhile).
    newest = credit([newer], stored())
    assert late([older], stored(attribution=newest)) == []
    assert late([older, newer], stored(attribution=newest)) == []  # already the rule's answer


def test_a_credit_by_id_is_final_and_a_credit_is_never_taken_away() -> None:
    by_id = credit([imp("r1")], stored(rec="r1"))
    newer = imp("r2", at=timedelta(minutes=4))
    assert late([imp("r1"), newer], stored(rec="r1", attribution=by_id)) == []
    window = credit([imp("r1")], stored())
    assert late([], stored(attribution=window)) == []


def test_outside_the_window_shadow_lists_and_other_types_credit_nothing() -> None:
    assert late([imp("old", at=timedelta(hours=-1))], stored()) == []
    assert late([imp("r1:shadow", shadow=True)], stored(rec="r1:shadow")) == []
    assert late([imp("r1")], stored(etype="view", rec="r1")) == []
    assert late([imp("r2", user="u2")], stored()) == []


def test_applying_the_updates_then_running_again_changes_nothing() -> None:
    impressions = [imp("a", at=timedelta(minutes=1)), imp("r1"), imp("b", at=timedelta(minutes=2))]
    events = [stored(eid="x", rec="r1"), stored(eid="y"), stored(eid="z", item="i7")]
    updates = late(impressions, *events)
    assert {u.event_id for u in updates} == {"x", "y"}
    done = {u.event_id: u.attribution for u in updates}
    after = [{**e, "attribution": done[e["_id"]]} if e["_id"] in done else e for e in events]
    assert late(impressions, *after) == []


def shown(
    iid: str, user: str | None, at: timedelta, items: tuple[str, ...], shadow: bool = False
) -> Impression:
    return Impression(
        impression_id=iid,
        request_id=iid.removesuffix(":shadow"),
        user_id=user,
        surface="recommendations",
        items=[ShownItem(item_id=i, position=n) for n, i in enumerate(items)],
        ts=T0 + at,
        shadow=shadow,
    )


def test_the_scope_covers_the_live_shoppers_their_items_and_the_window_in_whole_ms() -> None:
    scope = late_scope(
        [
            shown("a", "u1", timedelta(microseconds=1500), ("i1", "i2")),
            shown("b", "u2", timedelta(minutes=3), ("i3",)),
            shown("b:shadow", "u3", timedelta(hours=-1), ("i8",), shadow=True),
            shown("anon", None, timedelta(hours=-2), ("i9",)),
        ],
        WINDOW_S,
    )
    assert scope is not None
    assert (scope.user_ids, scope.item_ids) == ({"u1", "u2"}, {"i1", "i2", "i3"})
    assert scope.since == T0 + timedelta(milliseconds=1)  # the earliest live impression, whole ms
    # The window rule reaches an event exactly window_s after the newest one; one ms more it does not.
    last = T0 + timedelta(minutes=3, seconds=WINDOW_S)
    assert scope.since <= T0 + timedelta(milliseconds=1, microseconds=999)
    assert last < scope.until <= last + timedelta(milliseconds=1)
    assert late_scope([shown("s", "u1", timedelta(0), ("i1",), shadow=True)], WINDOW_S) is None
    assert late_scope([shown("anon", None, timedelta(0), ("i1",))], WINDOW_S) is None
    assert late_scope([], WINDOW_S) is None


@settings(max_examples=300, deadline=None)
@given(
    shown_=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2"]),  # owner
            st.integers(-2500, 2500),  # seconds from T0
            st.booleans(),  # shadow
            st.sets(st.sampled_from(["i1", "i2"]), min_size=1),
            st.booleans(),  # stored before the event (else: late)
        ),
        max_size=10,
    ),
    event_s=st.integers(-500, 2500),
    named=st.one_of(st.none(), st.integers(0, 9)),
)
def test_late_credit_equals_the_rules_answer_had_every_impression_come_first(
    shown_: list[Any], event_s: int, named: int | None
) -> None:
    everything = [
        imp(f"r{n}", user=u, at=timedelta(seconds=s), shadow=sh, items=tuple(sorted(items)))
        for n, (u, s, sh, items, _) in enumerate(shown_)
    ]
    early = [d for d, spec in zip(everything, shown_, strict=True) if spec[4]]
    event = stored(at=timedelta(seconds=event_s), rec=None if named is None else f"r{named}")
    at_insert = credit(early, event)
    if at_insert is not None:
        event["attribution"] = at_insert
    updates = late(everything, event)
    final = updates[0].attribution if updates else at_insert
    assert final == credit(everything, event)
    if updates and final["by"] == BY_WINDOW:
        # A credit by window from a late impression: the scope of that impression finds the event.
        (source,) = [d for d in everything if d["_id"] == final["impression_id"]]
        as_shown = shown(source["_id"], source["user_id"], source["ts"] - T0, tuple(source["item_ids"]))
        scope = late_scope([as_shown], WINDOW_S)
        assert scope is not None and scope.since <= event["ts"] < scope.until
        assert event["user_id"] in scope.user_ids and event["item_id"] in scope.item_ids
