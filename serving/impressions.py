"""What a list answer showed, captured on the request path and encoded into an impression.

A request holds on to what it already has (the ranked list, or the cached items JSON of a cache hit)
in one small ``Shown`` object and offers it to the impression log, which calls ``encode`` for the
Kafka key and value and hands them to the Kafka client's queue (about 15 us in all; no wait).

``encode`` writes the wire form of ``core.impressions.Impression`` directly, without pydantic: every
field comes from serving's own answer, and validating each record cost about 30 us (measured). The
consumer validates every record it reads (a bad one is dead-lettered with its reason), and a test
checks that ``encode`` and ``build().to_json()`` parse to the same record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from core.impressions import IMPRESSION_SCHEMA_VERSION, Impression, ShownItem, shadow_id
from serving.ranking import Ranked
from storage.impression_log import ImpressionLog


@dataclass(frozen=True, slots=True)
class Shown:
    """One served list: ``items`` is the ranked list, or the items JSON a cache hit served."""

    request_id: str
    surface: str
    user_id: str | None
    model_version: str | None
    items: Sequence[Ranked] | bytes
    ts_ms: int
    experiment_id: str | None = None
    variant: str | None = None
    anchor_item_id: str | None = None
    shadow: bool = False

    def encode(self) -> tuple[bytes, bytes]:
        """The Kafka key and value: ``build().key`` and ``build().to_json()``, without validation."""
        impression_id = shadow_id(self.request_id) if self.shadow else self.request_id
        data: dict[str, Any] = {
            "v": IMPRESSION_SCHEMA_VERSION,
            "impression_id": impression_id,
            "request_id": self.request_id,
            "surface": self.surface,
            "items": wire_items(self.items),
            "ts": self.ts_ms,
            "shadow": self.shadow,
        }
        for name in ("user_id", "model_version", "experiment_id", "variant", "anchor_item_id"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        key = self.user_id or self.anchor_item_id or impression_id
        return key.encode(), orjson.dumps(data)

    def build(self) -> Impression:
        return Impression(
            impression_id=shadow_id(self.request_id) if self.shadow else self.request_id,
            request_id=self.request_id,
            user_id=self.user_id,
            surface=self.surface,  # type: ignore[arg-type]  # validated against Surface here
            model_version=self.model_version,
            experiment_id=self.experiment_id,
            variant=self.variant,
            items=shown_items(self.items),
            ts=datetime.fromtimestamp(self.ts_ms / 1000, UTC),
            shadow=self.shadow,
            anchor_item_id=self.anchor_item_id,
        )


def shown_items(items: Sequence[Ranked] | bytes) -> list[ShownItem]:
    """Positions (0-based), reason kinds and scores of a ranked list or of a cached items JSON."""
    if isinstance(items, bytes):
        return [_from_json(pos, entry) for pos, entry in enumerate(orjson.loads(items))]
    return [
        ShownItem(item_id=r.item_id, position=pos, reason=r.kind, score=round(r.score, 6))
        for pos, r in enumerate(items)
    ]


def wire_items(items: Sequence[Ranked] | bytes) -> list[dict[str, Any]]:
    """``shown_items`` as JSON-ready dicts (what ``ShownItem`` dumps, None fields left out)."""
    out: list[dict[str, Any]] = []
    if isinstance(items, bytes):
        for pos, entry in enumerate(orjson.loads(items)):
            item: dict[str, Any] = {"item_id": entry["item_id"], "position": pos}
            reason = entry.get("reason")
            if isinstance(reason, dict) and reason.get("kind") is not None:
                item["reason"] = reason["kind"]
            if entry.get("score") is not None:
                item["score"] = entry["score"]
            out.append(item)
        return out
    return [
        {"item_id": r.item_id, "position": pos, "reason": r.kind, "score": round(r.score, 6)}
        for pos, r in enumerate(items)
    ]


def _from_json(position: int, entry: dict[str, Any]) -> ShownItem:
    reason = entry.get("reason")
    return ShownItem(
        item_id=entry["item_id"],
        position=position,
        reason=reason.get("kind") if isinstance(reason, dict) else None,
        score=entry.get("score"),
    )


def offer(log: ImpressionLog | None, shown: Shown) -> None:
    """Hand ``shown`` to the log (never blocks: a full queue is counted there); nothing when disabled."""
    if log is not None:
        log.offer(shown)
