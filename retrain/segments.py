"""Retrain's segment-popularity stage: read one attribute of every shopper, compute the per-segment
lists on the training part and judge them on the held-out new shoppers (``model.segment_popularity``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from core.event_table import EventTable
from core.settings import EventWeights
from core.shoppers import segment_key
from model.segment_popularity import SegmentPopularity, decide_segments, popularity_lists

log = logging.getLogger(__name__)


class ShopperSegments(Protocol):
    """``storage.shoppers.ShopperStore`` provides it."""

    def attribute_values(self, name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SegmentConfig:
    source: ShopperSegments
    attribute: str  # model.segment_attribute
    min_users: int  # model.segment_min_users: training shoppers a segment needs to get a list
    min_eval_users: int  # new held-out shoppers the decision needs (retrain.gate_min_users)


def user_segments(config: SegmentConfig, erased: set[str]) -> dict[str, str]:
    values = config.source.attribute_values(config.attribute)
    out: dict[str, str] = {}
    for user, value in values.items():
        key = segment_key(value)
        if key is not None and user not in erased:
            out[user] = key
    return out


def segment_stage(
    config: SegmentConfig,
    train: EventTable,
    firsts: dict[str, set[str]],
    weights: EventWeights,
    erased: set[str],
) -> SegmentPopularity:
    """The decision and lists; when the attributes cannot be read, global popularity is kept (the
    model itself does not depend on them, so the run goes on)."""
    try:
        segments = user_segments(config, erased)
    except Exception as exc:
        log.warning("event=segment_attributes_unreadable attribute=%s error=%s", config.attribute, exc)
        return SegmentPopularity(
            config.attribute, False, f"global popularity kept: shopper attributes unreadable ({exc})"
        )
    global_list, lists = popularity_lists(train, segments, weights, min_users=config.min_users)
    result = decide_segments(
        config.attribute, global_list, lists, firsts, segments, min_eval_users=config.min_eval_users
    )
    log.info(
        "event=segment_popularity attribute=%s shoppers=%d segments=%d wins=%s reason=%s",
        config.attribute,
        len(segments),
        len(lists),
        result.wins,
        result.reason,
    )
    return result
