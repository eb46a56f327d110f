"""Merchandising rules with versions: the port, its in-memory twin and the MongoDB adapter.

Collection ``merch_rules`` holds one document per version: ``_id`` is the integer version, ``rules``
the whole active set at that version, ``change`` what made it (add/remove, rule id, when). The
newest document is the active set; the older ones are the history. A change inserts version + 1, so
two admins changing rules at once cannot both write the same version: the loser's insert fails on
the duplicate ``_id`` and it re-reads and retries on the new set.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from core.merch_rules import MAX_RULES, Rule, RuleSet
from storage.mongo_collection import OwnedCollection

COLLECTION = "merch_rules"
RETRIES = 5
Doc = dict[str, Any]


class RuleExists(ValueError):
    pass


class UnknownRule(KeyError):
    pass


class TooManyRules(ValueError):
    pass


class RuleStore(Protocol):
    def current(self) -> RuleSet:
        """The active rules and their version (version 0, no rules, when none was ever stored)."""

    def add(self, rule: Rule) -> RuleSet:
        """Store a new rule (``created_at`` set now) as a new version; raises ``RuleExists``,
        ``TooManyRules``."""

    def remove(self, rule_id: str) -> RuleSet:
        """A new version without the rule; raises ``UnknownRule``."""

    def history(self, limit: int = 50) -> list[Doc]:
        """The newest ``limit`` versions, newest first: {version, rules, change}."""


def _added(current: RuleSet, rule: Rule) -> tuple[RuleSet, Doc]:
    if any(r.rule_id == rule.rule_id for r in current.rules):
        raise RuleExists(f"rule {rule.rule_id!r} already exists; remove it first to change it")
    if len(current.rules) >= MAX_RULES:
        raise TooManyRules(f"at most {MAX_RULES} rules can be active")
    now = datetime.now(UTC)
    stored = rule.model_copy(update={"created_at": rule.created_at or now})
    change = {"op": "add", "rule_id": rule.rule_id, "kind": rule.kind, "at": now}
    return RuleSet(version=current.version + 1, rules=(*current.rules, stored)), change


def _removed(current: RuleSet, rule_id: str) -> tuple[RuleSet, Doc]:
    kept = tuple(r for r in current.rules if r.rule_id != rule_id)
    if len(kept) == len(current.rules):
        raise UnknownRule(rule_id)
    gone = next(r for r in current.rules if r.rule_id == rule_id)
    change = {"op": "remove", "rule_id": rule_id, "kind": gone.kind, "at": datetime.now(UTC)}
    return RuleSet(version=current.version + 1, rules=kept), change


def _to_doc(rules: RuleSet, change: Doc) -> Doc:
    return {
        "_id": rules.version,
        "rules": [r.model_dump(mode="python", exclude_none=True) for r in rules.rules],
        "change": change,
    }


def _from_doc(doc: Doc) -> RuleSet:
    rules = []
    for raw in doc.get("rules", []):
        data = dict(raw)
        stamp = data.get("created_at")
        if isinstance(stamp, datetime) and stamp.tzinfo is None:
            data["created_at"] = stamp.replace(tzinfo=UTC)
        rules.append(Rule.model_validate(data))
    return RuleSet(version=int(doc["_id"]), rules=tuple(rules))


def _history_entry(doc: Doc) -> Doc:
    rules = _from_doc(doc)
    change = dict(doc.get("change") or {})
    at = change.get("at")
    if isinstance(at, datetime) and at.tzinfo is None:
        change["at"] = at.replace(tzinfo=UTC)
    return {"version": rules.version, "rules": list(rules.rules), "change": change}


class InMemoryRuleStore:
    def __init__(self) -> None:
        self.versions: list[Doc] = []
        self.fail_with: Exception | None = None
        # A change is read-modify-write: the lock stands in for MongoDB's unique _id.
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def current(self) -> RuleSet:
        self._check()
        return _from_doc(self.versions[-1]) if self.versions else RuleSet()

    def _write(self, made: tuple[RuleSet, Doc]) -> RuleSet:
        rules, change = made
        self.versions.append(_to_doc(rules, change))
        return rules

    def add(self, rule: Rule) -> RuleSet:
        with self._lock:
            return self._write(_added(self.current(), rule))

    def remove(self, rule_id: str) -> RuleSet:
        with self._lock:
            return self._write(_removed(self.current(), rule_id))

    def history(self, limit: int = 50) -> list[Doc]:
        self._check()
        return [_history_entry(d) for d in reversed(self.versions[-limit:])]


class MongoRuleStore(OwnedCollection):
    collection_name = COLLECTION

    def current(self) -> RuleSet:
        doc = self._collection.find_one({}, sort=[("_id", DESCENDING)])
        return RuleSet() if doc is None else _from_doc(doc)

    def _change(self, make: Any) -> RuleSet:
        for _attempt in range(RETRIES):
            rules, change = make(self.current())
            try:
                self._collection.insert_one(_to_doc(rules, change))
            except DuplicateKeyError:
                continue  # another writer took this version: re-read and apply on top of theirs
            return rules
        raise RuntimeError(f"rules changed concurrently {RETRIES} times in a row; try again")

    def add(self, rule: Rule) -> RuleSet:
        return self._change(lambda current: _added(current, rule))

    def remove(self, rule_id: str) -> RuleSet:
        return self._change(lambda current: _removed(current, rule_id))

    def history(self, limit: int = 50) -> list[Doc]:
        docs = self._collection.find({}).sort("_id", DESCENDING).limit(limit)
        return [_history_entry(d) for d in docs]
