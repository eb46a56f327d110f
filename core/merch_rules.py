"""Merchandising rules and how they arrange a ranked list (pure: no IO, no clock).

A merchandiser manages rules through ``/v1/admin/rules`` or ``streamrec rules``; they are stored with
an integer version (storage.merch_rules) and every list endpoint applies the active set:

- ``block``: items matching the condition (or listed in ``item_ids``) are never shown.
- ``boost`` / ``bury`` by ``factor`` (> 1): a matching item ranks as if it stood at its position
  divided (boost) or multiplied (bury) by the factor. Positions, not scores, because one list mixes
  scores of different kinds (model scores, popularity counts) that cannot be scaled against each other.
- ``pin``: ``item_id`` is shown at ``position`` (1-based) when the list is at least that long and
  the item passes the request's filters; positions beyond ``k`` do not apply to that request.
- ``diversity``: at most ``max_per_category`` items of one category in the top ``k`` (pinned items
  aside); over-capped items leave the list, which may then be shorter than ``k`` (services fetch
  extra candidates so it rarely is), or, with ``keep_rest`` (re-ranking a given page), follow it.

Order of application: block, boost/bury, diversity, pins (a pin wins over the diversity cap).
Every item a rule moved or placed carries (rule_id, kind) tags, which serving shows in its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.event_schema import PROPERTY_NAMES
from core.events import MAX_POSITION
from core.merch_filters import ItemFacts, value_matches

RuleKind = Literal["boost", "bury", "pin", "block", "diversity"]
RULE_KINDS: tuple[str, ...] = ("boost", "bury", "pin", "block", "diversity")
MAX_RULES = 500
MAX_BLOCK_IDS = 10_000
RuleId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
ItemIdText = Annotated[str, Field(min_length=1, max_length=256)]


class Condition(BaseModel):
    """The item's ``property`` (a catalog field or an item property) equals ``value``, compared as
    the filters compare (core.merch_filters.value_matches)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: str = Field(
        min_length=1,
        max_length=int(PROPERTY_NAMES["maxLength"]),
        description="title, category, brand, available, or a key of the item's properties",
    )
    value: str | int | float | bool

    def matches(self, item: ItemFacts | None) -> bool:
        if item is None:
            return False
        wanted = self.value
        text = ("true" if wanted else "false") if isinstance(wanted, bool) else str(wanted)
        return value_matches(item.value(self.property), text)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: RuleId
    kind: RuleKind
    condition: Condition | None = Field(default=None, description="boost, bury, block: which items")
    item_ids: tuple[ItemIdText, ...] | None = Field(
        default=None, max_length=MAX_BLOCK_IDS, description="boost, bury, block: these items (or a condition)"
    )
    factor: float | None = Field(default=None, gt=1.0, le=1000.0, description="boost, bury: how strongly")
    item_id: ItemIdText | None = Field(default=None, description="pin: the item")
    position: int | None = Field(default=None, ge=1, le=MAX_POSITION, description="pin: 1-based place")
    max_per_category: int | None = Field(
        default=None, ge=1, le=MAX_POSITION, description="diversity: the cap"
    )
    description: str | None = Field(default=None, max_length=1024)
    created_at: datetime | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        needs: dict[str, tuple[str, ...]] = {
            "boost": ("factor",),
            "bury": ("factor",),
            "block": (),
            "pin": ("item_id", "position"),
            "diversity": ("max_per_category",),
        }
        allowed = {
            "boost": {"condition", "item_ids", "factor"},
            "bury": {"condition", "item_ids", "factor"},
            "block": {"condition", "item_ids"},
            "pin": {"item_id", "position"},
            "diversity": {"max_per_category"},
        }[self.kind]
        for name in needs[self.kind]:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind} rule needs {name}")
        for name in ("condition", "item_ids", "factor", "item_id", "position", "max_per_category"):
            if name not in allowed and getattr(self, name) is not None:
                raise ValueError(f"a {self.kind} rule takes no {name}")
        if self.kind in ("boost", "bury", "block") and self.condition is None and not self.item_ids:
            raise ValueError(f"a {self.kind} rule needs a condition or item_ids")
        return self

    def selects(self, item_id: str, item: ItemFacts | None) -> bool:
        """For boost, bury and block: does this rule apply to the item?"""
        if self.item_ids is not None and item_id in self.item_ids:
            return True
        return self.condition is not None and self.condition.matches(item)

    @property
    def tag(self) -> RuleTag:
        return (self.rule_id, self.kind)


RuleTag = tuple[str, str]


class RuleSet(BaseModel):
    """The active rules and their version (0: none ever stored)."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(default=0, ge=0)
    rules: tuple[Rule, ...] = ()

    def of(self, *kinds: str) -> list[Rule]:
        return [r for r in self.rules if r.kind in kinds]

    @property
    def reorders(self) -> bool:
        """Whether rules may remove or move items down, so a list needs more candidates than ``k``."""
        return any(r.kind in ("block", "bury", "boost", "diversity") for r in self.rules)

    def blocked(self, item_id: str, item: ItemFacts | None) -> bool:
        return any(r.selects(item_id, item) for r in self.rules if r.kind == "block")


EMPTY = RuleSet()
Facts = Callable[[str], ItemFacts | None]


@dataclass(frozen=True, slots=True)
class Placed:
    """One item of an arranged list: ``index`` into the input candidates (None for a pinned item
    that was not among them) and the rules that moved or placed it."""

    item_id: str
    index: int | None
    tags: tuple[RuleTag, ...] = ()


def arrange(
    candidates: Sequence[str],
    k: int,
    rules: RuleSet,
    facts: Facts,
    may_show: Callable[[str], bool] = lambda _item_id: True,
    *,
    keep_rest: bool = False,
) -> list[Placed]:
    """The top ``k`` of the ranked ``candidates`` (distinct ids, best first) under ``rules``.

    ``may_show(item_id)`` says whether a pinned item passes the request's own filters (unavailable,
    excluded, filtered out: it is not pinned then); candidates are assumed to pass them already."""
    if not rules.rules:
        return [Placed(iid, i) for i, iid in enumerate(candidates[:k])]
    blocks = rules.of("block")
    weights = rules.of("boost", "bury")
    keyed: list[tuple[float, int, Placed]] = []
    for index, iid in enumerate(candidates):
        item = facts(iid) if blocks or weights else None
        if any(r.selects(iid, item) for r in blocks):
            continue
        place = float(index + 1)
        tags: list[RuleTag] = []
        for rule in weights:
            if rule.selects(iid, item):
                factor = float(rule.factor or 1.0)
                place = place / factor if rule.kind == "boost" else place * factor
                tags.append(rule.tag)
        keyed.append((place, index, Placed(iid, index, tuple(tags))))
    keyed.sort(key=lambda t: (t[0], t[1]))
    ordered = [p for _place, _index, p in keyed]
    top, rest = _cap_categories(ordered, k, rules, facts)
    top = _pin(top, {p.item_id: p for p in ordered}, k, rules, facts, may_show)[:k]
    if not keep_rest:
        return top
    shown = {p.item_id for p in top}
    return top + [p for p in rest if p.item_id not in shown]


def _cap_categories(
    ordered: list[Placed], k: int, rules: RuleSet, facts: Facts
) -> tuple[list[Placed], list[Placed]]:
    """(the top ``k`` under the cap, the candidates left out of it)"""
    caps = rules.of("diversity")
    if not caps:
        return ordered[:k], ordered[k:]
    tightest = min(caps, key=lambda r: r.max_per_category or 0)
    cap = int(tightest.max_per_category or 0)
    counts: dict[str, int] = {}
    top: list[Placed] = []
    moved: list[Placed] = []
    for placed in ordered:
        if len(top) >= k:
            moved.append(placed)
            continue
        item = facts(placed.item_id)
        category = item.category if item is not None else None
        if category is None:
            top.append(placed)  # no category to count against
            continue
        if counts.get(category, 0) >= cap:
            moved.append(Placed(placed.item_id, placed.index, (*placed.tags, tightest.tag)))
            continue
        counts[category] = counts.get(category, 0) + 1
        top.append(placed)
    return top, moved


def _pin(
    ordered: list[Placed],
    candidates: dict[str, Placed],
    k: int,
    rules: RuleSet,
    facts: Facts,
    may_show: Callable[[str], bool],
) -> list[Placed]:
    """Pinned items take their positions; the others fill the remaining places in order. A list too
    short to reach a pin's position ends with the pinned item. Of two pins at one position (or of
    one item), the later rule wins."""
    slots: dict[int, Placed] = {}
    for rule in rules.of("pin"):
        iid, pos = str(rule.item_id), int(rule.position or 1) - 1
        if pos >= k or rules.blocked(iid, facts(iid)) or not may_show(iid):
            continue
        for taken in [p for p, placed in slots.items() if placed.item_id == iid]:
            del slots[taken]
        slots[pos] = Placed(iid, None, (rule.tag,))
    if not slots:
        return ordered
    pinned = {placed.item_id for placed in slots.values()}
    for pos, placed in slots.items():
        old = candidates.get(placed.item_id)
        if old is not None:  # a candidate pinned: keeps its reason and earlier tags
            slots[pos] = Placed(old.item_id, old.index, (*old.tags, *placed.tags))
    others = iter(p for p in ordered if p.item_id not in pinned)
    out: list[Placed] = []
    for pos in range(k):
        if pos in slots:
            out.append(slots.pop(pos))
            continue
        following = next(others, None)
        if following is None:
            break
        out.append(following)
    out.extend(slots[pos] for pos in sorted(slots))
    return out


def fetch_size(k: int, rules: RuleSet, filtering: bool, overfetch: int = 3) -> int:
    """How many candidates to rank for ``k`` answers: more when rules or filters may drop or move
    items, plus room for the pinned ones."""
    pins = len(rules.of("pin"))
    if not filtering and not rules.reorders:
        return k + pins
    caps = [int(r.max_per_category or 1) for r in rules.of("diversity")]
    # A cap of c needs candidates from at least k / c categories: the deeper the list, the more it has.
    spread = k * -(-k // min(caps)) if caps else 0
    return overfetch * k + spread + pins
