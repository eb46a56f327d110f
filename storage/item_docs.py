"""Item update documents: how a batch of partial updates folds into one MongoDB write per item."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]
ITEM_FIELDS = ("title", "category", "price", "available", "properties")


def first_added(updates: list[Doc]) -> dict[str, Any]:
    """The ``added_at`` of each item's first update in ``updates``: stored only if it creates the item."""
    out: dict[str, Any] = {}
    for update in updates:
        if update.get("added_at") is not None:
            out.setdefault(update["item_id"], update["added_at"])
    return out


def merge_item_updates(updates: list[Doc]) -> dict[str, Doc]:
    """Fold updates to the same item into one $set (later fields win), keeping first-seen order."""
    merged: dict[str, Doc] = {}
    for update in updates:
        fields = {k: v for k, v in update.items() if k in ITEM_FIELDS}
        merged.setdefault(update["item_id"], {}).update(fields)
    return merged
