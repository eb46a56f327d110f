"""The batch processor credits stored events to impressions that arrive after them (in-memory twins)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from consumer.processor import BatchProcessor, SinkUnavailable
from core.late_attribution import AttributionUpdate
from storage.event_store import Doc
from storage.event_store_memory import InMemoryEventStore
from tests.unit.test_consumer_attribution import WINDOW, attribution, click, shown
from tests.unit.test_consumer_processor import NOW_S, Rig


def rig_with(store: InMemoryEventStore) -> Rig:
    rig = Rig()
    rig.store = store
    rig.proc = BatchProcessor(
        rig.settings, store, rig.state, rig.dlq, clock=lambda: NOW_S, impressions=rig.impressions
    )
    return rig


def test_a_click_stored_before_its_impression_is_credited_by_id_when_the_impression_arrives() -> None:
    rig = Rig()
    first = rig.proc.process([click("e1", 0, recommendation_id="r1", position=2)])
    assert attribution(rig, "e1") is None and first.late == {}
    out = rig.proc.process([shown("r1", 0)])
    got = attribution(rig, "e1")
    assert (got["impression_id"], got["by"], got["position"], got["variant"]) == ("r1", "id", 2, "treatment")
    assert out.late == {("click", "3", "treatment", "id", "new"): 1}
    # A new credit counts in the CTR counter too, as if the click had come second.
    assert out.attributed == {("click", "3", "treatment", "id"): 1}


def test_a_click_without_an_id_is_credited_by_window_when_the_impression_arrives() -> None:
    rig = Rig()
    rig.proc.process([click("e1", 0, etype="add_to_cart")])
    out = rig.proc.process([shown("r1", 0, items=("i9", "i2"))])
    got = attribution(rig, "e1")
    assert (got["impression_id"], got["by"], got["position"]) == ("r1", "window", 1)
    assert out.late == {("add_to_cart", "3", "treatment", "window", "new"): 1}


def test_a_window_credit_is_upgraded_to_by_id_when_the_named_impression_arrives() -> None:
    rig = Rig()
    rig.proc.process([shown("w", 0, age=timedelta(minutes=8))])
    rig.proc.process([click("e1", 0, recommendation_id="r1")])
    assert (attribution(rig, "e1")["impression_id"], attribution(rig, "e1")["by"]) == ("w", "window")
    out = rig.proc.process([shown("r1", 1, age=timedelta(minutes=9), variant="control")])
    got = attribution(rig, "e1")
    assert (got["impression_id"], got["by"], got["variant"]) == ("r1", "id", "control")
    assert out.late == {("click", "3", "control", "id", "upgraded"): 1}
    assert out.attributed == {}  # counted once already, when it was credited by window


def test_a_window_credit_moves_to_a_newer_impression_that_arrived_late() -> None:
    rig = Rig()
    rig.proc.process([shown("a", 0, age=timedelta(minutes=9))])
    rig.proc.process([click("e1", 0)])
    out = rig.proc.process([shown("b", 1, age=timedelta(minutes=6))])
    assert attribution(rig, "e1")["impression_id"] == "b"
    assert out.late == {("click", "3", "treatment", "window", "moved"): 1}


def test_a_click_outside_the_window_of_the_late_impression_stays_unattributed() -> None:
    rig = Rig()
    rig.proc.process([click("early", 0, age=timedelta(hours=1)), click("late", 1, age=timedelta(minutes=5))])
    # Shown 40 minutes ago: the early click came before it, the late one more than the window after it.
    out = rig.proc.process([shown("r1", 0, age=WINDOW + timedelta(minutes=10))])
    assert attribution(rig, "late") is None
    assert attribution(rig, "early") is None
    assert out.late == {}


def test_shadow_impressions_never_credit_a_stored_click() -> None:
    rig = Rig()
    rig.proc.process([click("e1", 0, recommendation_id="r1:shadow"), click("e2", 1)])
    out = rig.proc.process([shown("r1:shadow", 0, shadow=True)])
    assert attribution(rig, "e1") is None and attribution(rig, "e2") is None
    assert out.late == {}


def test_running_the_pass_again_changes_nothing() -> None:
    rig = Rig()
    rig.proc.process([click("e1", 0, recommendation_id="r1"), click("e2", 1, item="i3")])
    batch = [shown("r1", 0)]
    first = rig.proc.process(batch)
    assert sum(first.late.values()) == 2
    before = copy.deepcopy(rig.store.events)
    again = rig.proc.process(batch)  # redelivered (offsets not committed)
    assert again.late == {} and again.attributed == {}
    assert rig.store.events == before


class CrashAfterImpressions(InMemoryEventStore):
    """MongoDB goes away right after the impressions were inserted, before the late pass."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False
        self.queries = 0

    def late_attribution_candidates(
        self,
        user_ids: Collection[str],
        item_ids: Collection[str],
        since: datetime,
        until: datetime,
        event_types: Collection[str],
    ) -> list[Doc]:
        self.queries += 1
        if self.fail_next:
            self.fail_next = False
            raise AutoReconnect("mongo went away")
        return super().late_attribution_candidates(user_ids, item_ids, since, until, event_types)


def test_impressions_already_stored_by_a_crashed_attempt_still_credit_on_redelivery() -> None:
    store = CrashAfterImpressions()
    rig = rig_with(store)
    rig.proc.process([click("e1", 0, recommendation_id="r1"), click("e2", 1, item="i3")])
    store.fail_next = True
    batch = [shown("r1", 0)]
    with pytest.raises(SinkUnavailable):
        rig.proc.process(batch)
    assert set(rig.impressions.docs) == {"r1"} and attribution(rig, "e1") is None
    out = rig.proc.process(batch)  # read again: the impression is a duplicate now
    assert out.counts[("impression", "duplicate")] == 1 and out.counts[("impression", "stored")] == 0
    assert (attribution(rig, "e1")["by"], attribution(rig, "e2")["by"]) == ("id", "window")
    assert out.late == {
        ("click", "3", "treatment", "id", "new"): 1,
        ("click", "3", "treatment", "window", "new"): 1,
    }


class Counting(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def late_attribution_candidates(self, *args: Any) -> list[Doc]:
        self.calls.append("candidates")
        return super().late_attribution_candidates(*args)

    def set_attribution(self, updates: Sequence[AttributionUpdate]) -> int:
        self.calls.append(f"set:{len(updates)}")
        return super().set_attribution(updates)


def test_one_query_and_one_write_per_batch_and_nothing_for_batches_without_impressions() -> None:
    store = Counting()
    rig = rig_with(store)
    clicks = [
        click(f"e{n}", n, user=f"u{n % 3}", **({"recommendation_id": f"r{n % 6}"} if n % 2 else {}))
        for n in range(30)
    ]
    rig.proc.process([*clicks, click("v", 30, etype="view")])
    assert store.calls == []  # the hot path: no impressions, no late pass
    rig.proc.process([shown(f"r{n}", n, user=f"u{n % 3}") for n in range(6)])
    assert store.calls == ["candidates", "set:30"]
    assert sum(1 for d in store.events.values() if d.get("attribution")) == 30
    assert "attribution" not in store.events["v"]
