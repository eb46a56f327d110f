"""The batch processor with impressions, against the in-memory twins: stored once, events attributed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect
from redis.exceptions import ConnectionError as RedisConnectionError

from consumer.batch import RawMessage
from consumer.processor import SinkUnavailable
from core.impressions import Impression, ShownItem
from storage.impressions import InMemoryImpressionStore
from tests.unit.test_consumer_processor import NOW, NOW_S, Rig

WINDOW = timedelta(minutes=30)


def shown(
    iid: str,
    offset: int,
    *,
    user: str | None = "u1",
    items: tuple[str, ...] = ("i1", "i2", "i3"),
    age: timedelta = timedelta(minutes=10),
    shadow: bool = False,
    variant: str | None = "treatment",
) -> RawMessage:
    imp = Impression(
        impression_id=iid,
        request_id=iid.removesuffix(":shadow"),
        user_id=user,
        surface="recommendations",
        model_version="3",
        experiment_id="exp1" if variant else None,
        variant=variant,
        items=[ShownItem(item_id=i, position=n) for n, i in enumerate(items)],
        ts=NOW - age,
        shadow=shadow,
    )
    return RawMessage("im", 0, offset, imp.key, imp.to_json())


def click(
    eid: str,
    offset: int,
    *,
    item: str = "i2",
    user: str = "u1",
    etype: str = "click",
    age: timedelta = timedelta(minutes=5),
    **extra: Any,
) -> RawMessage:
    body = {
        "event_id": eid,
        "event_type": etype,
        "user_id": user,
        "item_id": item,
        "timestamp": int((NOW - age).timestamp() * 1000),
        **extra,
    }
    return RawMessage("ev", 0, offset, user.encode(), orjson.dumps(body))


def attribution(rig: Rig, eid: str) -> Any:
    return rig.store.events[eid].get("attribution")


def test_impression_and_the_click_it_caused_in_one_batch_are_linked_by_id() -> None:
    rig = Rig()
    # The click comes first in the batch: impressions are stored before any event is attributed.
    out = rig.proc.process([click("e1", 0, recommendation_id="r1"), shown("r1", 0)])
    assert set(rig.impressions.docs) == {"r1"}
    assert attribution(rig, "e1") == {
        "impression_id": "r1",
        "by": "id",
        "surface": "recommendations",
        "model_version": "3",
        "experiment_id": "exp1",
        "variant": "treatment",
        "position": 1,
        "impression_ts": NOW - timedelta(minutes=10),
    }
    assert out.impressions == {("recommendations", "3", "treatment"): 1}
    assert out.attributed == {("click", "3", "treatment", "id"): 1}
    assert out.counts[("impression", "stored")] == 1
    # Impressions have no Redis effects, but their offsets are applied and committed like any record.
    assert rig.state.snapshot(NOW_S)["pop"]["all"] == {"i2": pytest.approx(rig.settings.model.weights.click)}
    assert rig.state.applied_offsets([("im", 0)]) == {("im", 0): 0}
    assert out.commit == {("ev", 0): 1, ("im", 0): 1}


def test_a_later_click_without_an_id_is_linked_by_window() -> None:
    rig = Rig()
    rig.proc.process([shown("r1", 0, age=timedelta(minutes=20)), shown("r2", 1, items=("i9", "i2"))])
    out = rig.proc.process([click("e1", 0, position=7)])
    got = attribution(rig, "e1")
    assert (got["impression_id"], got["by"], got["position"]) == ("r2", "window", 1)
    assert out.attributed == {("click", "3", "treatment", "window"): 1}


def test_outside_the_window_or_not_an_attributed_type_stays_unattributed() -> None:
    rig = Rig()
    rig.proc.process([shown("r1", 0, age=timedelta(hours=2))])
    out = rig.proc.process(
        [
            click("late", 0, age=timedelta(hours=2) - WINDOW - timedelta(seconds=1)),
            click("view", 1, etype="view", recommendation_id="r1"),
            click("purchase", 2, etype="purchase", age=timedelta(hours=2) - WINDOW),
        ]
    )
    assert attribution(rig, "late") is None and "attribution" not in rig.store.events["late"]
    assert attribution(rig, "view") is None
    assert attribution(rig, "purchase")["by"] == "window"  # exactly at the window's end
    assert out.attributed == {("purchase", "3", "treatment", "window"): 1}


def test_shadow_lists_are_stored_but_never_credited() -> None:
    rig = Rig()
    out = rig.proc.process([shown("r1:shadow", 0, shadow=True)])
    assert out.impressions == {} and out.counts[("impression", "stored")] == 1  # not a shown list
    rig.proc.process([click("e1", 0, recommendation_id="r1:shadow")])
    assert rig.impressions.docs["r1:shadow"]["shadow"] is True
    assert attribution(rig, "e1") is None


def test_a_bad_impression_is_dead_lettered_with_its_reason_and_the_rest_is_stored() -> None:
    rig = Rig()
    bad = RawMessage("im", 0, 1, b"u1", orjson.dumps({"impression_id": "x", "surface": "nowhere"}))
    out = rig.proc.process([shown("r1", 0), bad, RawMessage("im", 0, 2, b"u1", b"{nope")])
    assert set(rig.impressions.docs) == {"r1"}
    assert out.counts[("impression", "dead_lettered")] == 2
    headers = [dict(h) for _, _, h in rig.dlq.records]
    assert [h["error_code"] for h in headers] == [b"invalid_value", b"bad_json"]
    assert all(h["reason"] and h["source_topic"] == b"im" for h in headers)
    assert out.commit == {("im", 0): 3}


def test_an_impression_is_stored_once_and_counted_once_across_redeliveries() -> None:
    rig = Rig()
    batch = [shown("r1", 0), shown("r1", 1)]  # the producer retried: the same impression twice
    first = rig.proc.process(batch)
    again = rig.proc.process(batch)  # the whole batch again (offsets not committed)
    assert len(rig.impressions.docs) == 1
    assert first.impressions == {("recommendations", "3", "treatment"): 1}
    assert (first.counts[("impression", "stored")], first.counts[("impression", "duplicate")]) == (1, 1)
    assert again.impressions == {} and again.counts[("impression", "duplicate")] == 2


def test_a_redelivery_whose_attribution_would_differ_is_not_a_conflict() -> None:
    rig = Rig()
    record = click("e1", 0, recommendation_id="r1")
    rig.proc.process([record])  # its impression is not stored yet: no attribution
    assert attribution(rig, "e1") is None
    out = rig.proc.process([shown("r1", 0), record])  # redelivered after the impression arrived
    assert out.counts[("click", "redelivered")] == 1
    assert rig.dlq.records == []
    # The redelivery itself changes nothing stored; the impression credits the stored click late.
    assert attribution(rig, "e1")["by"] == "id"
    assert out.late == {("click", "3", "treatment", "id", "new"): 1}
    # The same event sent again from another record is a duplicate, not a conflict, either.
    out = rig.proc.process([click("e1", 1, recommendation_id="r1")])
    assert out.counts[("click", "duplicate")] == 1 and rig.dlq.records == []


def test_counts_survive_a_redis_outage_after_the_mongodb_step() -> None:
    rig = Rig()
    rig.state.fail_with = RedisConnectionError("down")
    batch = [shown("r1", 0), click("e1", 0, recommendation_id="r1")]
    with pytest.raises(SinkUnavailable) as err:
        rig.proc.process(batch)
    assert err.value.sink == "redis"
    rig.state.fail_with = None
    out = rig.proc.process(batch)  # the retry finds both stored already
    assert out.counts[("click", "redelivered")] == 1
    assert out.impressions == {("recommendations", "3", "treatment"): 1}
    assert out.attributed == {("click", "3", "treatment", "id"): 1}
    assert rig.proc.process([click("e2", 1, item="i7")]).impressions == {}


class FailingImpressions(InMemoryImpressionStore):
    def insert_impressions(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        raise AutoReconnect("impressions down")

    def recent_for_users(self, user_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
        raise AutoReconnect("impressions down")


def test_an_impression_store_outage_is_a_mongodb_outage() -> None:
    for batch in ([shown("r1", 0)], [click("e1", 0)]):
        rig = Rig()
        rig.proc.impressions = FailingImpressions()
        with pytest.raises(SinkUnavailable) as err:
            rig.proc.process(batch)
        assert err.value.sink == "mongo"
        assert rig.store.events == {} and rig.state.transactions == 0


def test_attribution_reads_the_store_twice_per_batch_at_most() -> None:
    calls: list[str] = []

    class Counting(InMemoryImpressionStore):
        def impressions_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
            calls.append("by_id")
            return super().impressions_by_id(ids)

        def recent_for_users(self, user_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
            calls.append("recent")
            return super().recent_for_users(user_ids, since)

    rig = Rig()
    rig.proc.impressions = Counting()
    rig.proc.process([shown(f"r{n}", n, user=f"u{n % 3}") for n in range(6)])
    events = [
        click(f"e{n}", n, user=f"u{n % 3}", **({"recommendation_id": f"r{n}"} if n % 2 else {}))
        for n in range(40)
    ]
    rig.proc.process([*events, click("v", 40, etype="view")])
    assert calls == ["by_id", "recent"]
    assert sum(1 for d in rig.store.events.values() if d.get("attribution")) == 40
    calls.clear()
    rig.proc.process([click("only-views", 41, etype="view")])
    assert calls == []


def test_impressions_without_a_model_or_experiment_count_under_none() -> None:
    rig = Rig()
    out = rig.proc.process([shown("r1", 0, variant=None, user=None)])
    assert out.impressions == {("recommendations", "3", "none"): 1}
    assert rig.impressions.docs["r1"]["ts"] == datetime.fromtimestamp(NOW_S, tz=UTC) - timedelta(minutes=10)


def test_an_impression_mongodb_refuses_is_isolated_and_dead_lettered() -> None:
    class Refusing(InMemoryImpressionStore):
        def insert_impressions(self, docs: Sequence[dict[str, Any]]) -> set[str]:
            if any(d["_id"] == "poison" for d in docs):
                raise InvalidDocument("cannot encode object")
            return super().insert_impressions(docs)

    rig = Rig()
    rig.proc.impressions = store = Refusing()
    out = rig.proc.process([shown("r1", 0), shown("poison", 1), shown("r2", 2)])
    assert set(store.docs) == {"r1", "r2"}
    assert out.counts[("impression", "dead_lettered")] == 1 and out.counts[("impression", "stored")] == 2
    headers = dict(rig.dlq.records[0][2])
    assert headers["error_code"] == b"unstorable" and b"cannot encode" in headers["reason"]
    assert headers["source_offset"] == b"1"
