"""Contract of ``storage.merch_rules.RuleStore``: MongoRuleStore on the real MongoDB-wire server and
InMemoryRuleStore keep the same versions and history."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from core.merch_rules import Condition, Rule
from storage.merch_rules import InMemoryRuleStore, MongoRuleStore, RuleExists, UnknownRule


@pytest.fixture(params=["mongo", "twin"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "twin":
        yield InMemoryRuleStore()
        return
    settings = request.getfixturevalue("settings")
    mongo = MongoRuleStore.from_settings(settings.mongo)
    try:
        yield mongo
    finally:
        mongo.close()


BOOST = Rule(rule_id="promo", kind="boost", condition=Condition(property="brand", value="acme"), factor=2.5)
PIN = Rule(rule_id="hero", kind="pin", item_id="i-1", position=1)


def test_every_change_is_a_new_version_with_history(store: Any) -> None:
    assert store.current().version == 0 and store.current().rules == ()
    first = store.add(BOOST)
    assert first.version == 1 and first.rules[0].created_at is not None
    second = store.add(PIN)
    assert second.version == 2 and [r.rule_id for r in second.rules] == ["promo", "hero"]
    current = store.current()
    assert current.version == 2 and current.rules[0].condition == BOOST.condition
    assert current.rules[0].factor == 2.5 and current.rules[1].position == 1
    assert current.rules[0].created_at.tzinfo is not None
    with pytest.raises(RuleExists):
        store.add(PIN)
    third = store.remove("promo")
    assert third.version == 3 and [r.rule_id for r in third.rules] == ["hero"]
    with pytest.raises(UnknownRule):
        store.remove("promo")
    history = store.history()
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[0]["change"]["op"] == "remove" and history[0]["change"]["rule_id"] == "promo"
    assert history[2]["change"] == {**history[2]["change"], "op": "add", "kind": "boost"}
    assert [r.rule_id for r in history[1]["rules"]] == ["promo", "hero"]
    assert [h["version"] for h in store.history(limit=1)] == [3]


def test_concurrent_writers_each_get_their_own_version(store: Any) -> None:
    def add(n: int) -> None:
        store.add(Rule(rule_id=f"b{n}", kind="block", item_ids=(f"x{n}",)))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    current = store.current()
    assert current.version == 4 and sorted(r.rule_id for r in current.rules) == ["b0", "b1", "b2", "b3"]
