"""core.merch_filters (the filter grammar) and core.merch_rules (rules arranging a list)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.merch_filters import FilterError, parse_filters, value_matches
from core.merch_rules import Condition, Rule, RuleSet, arrange, fetch_size


@dataclass(frozen=True)
class Item:
    category: str | None = None
    price: float | None = None
    props: dict[str, Any] = field(default_factory=dict)
    brand: str | None = None

    def value(self, name: str) -> Any:
        if name in ("category", "price", "brand"):
            return getattr(self, name)
        return self.props.get(name)


# -- filters --


def test_value_matching_follows_the_items_type() -> None:
    assert value_matches("Red", "red") and not value_matches("red", "blue")
    assert value_matches(42, "42") and value_matches(42.0, "42") and not value_matches(42, "x")
    assert value_matches(True, "true") and not value_matches(True, "false") and not value_matches(True, "1")
    assert not value_matches(None, "x") and not value_matches(1.0, "nan")


def test_filter_passes_and_rejects() -> None:
    f = parse_filters(price_min=10, price_max="20", brand="acme", filters=["colour:red", "colour:blue"])
    assert f.active and f.equals == {"brand": ("acme",), "colour": ("red", "blue")}
    assert f.passes(Item(price=15, brand="ACME", props={"colour": "blue"}))
    assert not f.passes(Item(price=25, brand="acme", props={"colour": "red"}))
    assert not f.passes(Item(price=15, brand="other", props={"colour": "red"}))
    assert not f.passes(Item(price=None, brand="acme", props={"colour": "red"}))
    assert not f.passes(None)
    # Only the first ':' separates.
    assert parse_filters(filters=["url:http://x"]).equals == {"url": ("http://x",)}
    assert parse_filters().passes(None) and parse_filters().key() == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": ["colour"]}, "malformed"),
        ({"filters": [":red"]}, "malformed"),
        ({"filters": ["colour:"]}, "malformed"),
        ({"filters": ["price:3"]}, "price_min and price_max"),
        ({"filters": ["nope:1"]}, "unknown property 'nope'"),
        ({"price_min": "cheap"}, "price_min must be a number"),
        ({"price_max": -1}, "finite number >= 0"),
        ({"price_min": 5, "price_max": 1}, "greater than price_max"),
        ({"brand": " "}, "brand must not be blank"),
        ({"filters": ["a:b"] * 21}, "at most 20"),
    ],
)
def test_bad_filters_say_why(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filters(known=lambda name: name in {"colour", "a"}, **kwargs)


# -- rules --

ITEMS = {f"{cat}-{n}": Item(category=cat, props={"promo": n % 2 == 0}) for cat in "abc" for n in range(6)}


def facts(item_id: str) -> Item | None:
    return ITEMS.get(item_id)


def rules(*made: Rule) -> RuleSet:
    return RuleSet(version=1, rules=made)


def test_rule_fields_are_checked_per_kind() -> None:
    with pytest.raises(ValidationError, match="needs factor"):
        Rule(rule_id="r", kind="boost", condition=Condition(property="x", value=1))
    with pytest.raises(ValidationError, match="takes no factor"):
        Rule(rule_id="r", kind="block", item_ids=("a",), factor=2)
    with pytest.raises(ValidationError, match="condition or item_ids"):
        Rule(rule_id="r", kind="bury", factor=2)
    with pytest.raises(ValidationError, match="needs item_id"):
        Rule(rule_id="r", kind="pin", position=1)
    with pytest.raises(ValidationError):
        Rule(rule_id="r", kind="boost", item_ids=("a",), factor=0.5)  # a boost that buries


def test_each_rule_kind_with_tags() -> None:
    order = ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1"]
    none = arrange(order, 3, RuleSet(), facts)
    assert [p.item_id for p in none] == order[:3] and all(p.tags == () for p in none)

    block = Rule(rule_id="no-b", kind="block", condition=Condition(property="category", value="b"))
    assert [p.item_id for p in arrange(order, 4, rules(block), facts)] == ["a-0", "a-1", "c-0", "c-1"]

    boost = Rule(rule_id="up", kind="boost", item_ids=("c-1",), factor=7)
    got = arrange(order, 3, rules(boost), facts)
    assert got[0].item_id == "c-1" and got[0].tags == (("up", "boost"),)

    bury = Rule(rule_id="down", kind="bury", condition=Condition(property="category", value="a"), factor=10)
    got = arrange(order, 6, rules(bury), facts)
    assert [p.item_id for p in got][-2:] == ["a-0", "a-1"] and got[-1].tags == (("down", "bury"),)

    cap = Rule(rule_id="div", kind="diversity", max_per_category=1)
    got = arrange(order, 3, rules(cap), facts)
    assert [p.item_id for p in got] == ["a-0", "b-0", "c-0"]

    pin = Rule(rule_id="p", kind="pin", item_id="z-9", position=2)
    got = arrange(order, 3, rules(pin), facts)
    assert [p.item_id for p in got] == ["a-0", "z-9", "a-1"] and got[1].index is None
    assert got[1].tags == (("p", "pin"),)
    # A pin the request's filters refuse, or beyond k, does not apply.
    assert [p.item_id for p in arrange(order, 3, rules(pin), facts, lambda i: i != "z-9")] == order[:3]
    far = Rule(rule_id="far", kind="pin", item_id="z-9", position=4)
    assert [p.item_id for p in arrange(order, 3, rules(far), facts)] == order[:3]
    # Bool condition against a property.
    promo = Rule(rule_id="promo", kind="block", condition=Condition(property="promo", value=True))
    assert [p.item_id for p in arrange(order, 6, rules(promo), facts)] == ["a-1", "b-1", "c-1"]


def test_fetch_size_grows_only_when_needed() -> None:
    assert fetch_size(10, RuleSet(), False) == 10
    assert fetch_size(10, RuleSet(), True) == 30
    pin = Rule(rule_id="p", kind="pin", item_id="x", position=1)
    assert fetch_size(10, rules(pin), False) == 11


rule_strategy = st.one_of(
    st.builds(
        lambda cat, f, up: Rule(
            rule_id=f"w{cat}{f}",
            kind="boost" if up else "bury",
            condition=Condition(property="category", value=cat),
            factor=f,
        ),
        st.sampled_from("abc"),
        st.floats(1.5, 20),
        st.booleans(),
    ),
    st.builds(
        lambda ids: Rule(rule_id=f"b{len(ids)}", kind="block", item_ids=tuple(ids)),
        st.lists(st.sampled_from(sorted(ITEMS)), min_size=1, max_size=4),
    ),
    st.builds(
        lambda iid, pos: Rule(rule_id=f"p{iid}{pos}", kind="pin", item_id=iid, position=pos),
        st.sampled_from([*sorted(ITEMS), "new-1"]),
        st.integers(1, 8),
    ),
    st.builds(lambda n: Rule(rule_id=f"d{n}", kind="diversity", max_per_category=n), st.integers(1, 3)),
)


@settings(max_examples=300, deadline=None)
@given(
    order=st.permutations(sorted(ITEMS)).map(lambda p: p[:12]),
    k=st.integers(1, 10),
    made=st.lists(rule_strategy, max_size=5, unique_by=lambda r: r.rule_id),
)
def test_arranged_lists_keep_the_invariants(order: list[str], k: int, made: list[Rule]) -> None:
    ruleset = RuleSet(version=1, rules=tuple(made))
    got = arrange(order, k, ruleset, facts)
    ids = [p.item_id for p in got]
    assert len(ids) == len(set(ids)) <= k
    assert not any(ruleset.blocked(i, facts(i)) for i in ids)
    # Every item comes from the candidates, except pinned ones.
    pinned = {r.item_id for r in made if r.kind == "pin" and (r.position or 0) <= k}
    assert all(i in order or i in pinned for i in ids)
    # A pinned, unblocked item is at its position when the list reaches it (a pin that shares its
    # place or its item with another pin is left out of this check: the newer one wins).
    pins = [r for r in made if r.kind == "pin"]
    for rule in pins:
        shared = [r for r in pins if r.position == rule.position or r.item_id == rule.item_id]
        full = rule.position is not None and rule.position <= k and len(ids) == k
        if len(shared) == 1 and full and not ruleset.blocked(str(rule.item_id), facts(str(rule.item_id))):
            assert ids[int(rule.position or 0) - 1] == rule.item_id
    caps = [r.max_per_category for r in made if r.kind == "diversity"]
    if caps:
        counts: dict[str, int] = {}
        for placed in got:
            item = facts(placed.item_id)
            if item is not None and item.category and not any(t[1] == "pin" for t in placed.tags):
                counts[item.category] = counts.get(item.category, 0) + 1
        assert all(n <= min(c or 0 for c in caps) for n in counts.values())
    # Without any rule affecting them, the list is the candidates' prefix.
    if not made:
        assert ids == order[:k]
