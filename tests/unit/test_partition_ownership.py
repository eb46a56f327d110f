"""Explicit partition ownership: the share arithmetic, the setting's validation, and the refresh logic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from consumer.partition_ownership import ManualAssignment, owned, parse_share
from core.settings import ConsumerSettings


@given(st.integers(1, 12), st.dictionaries(st.sampled_from("abc"), st.integers(0, 40), max_size=3))
def test_shares_partition_every_topic_exactly_once(count: int, sizes: dict[str, int]) -> None:
    partitions = {t: range(n) for t, n in sizes.items()}
    shares = [owned(partitions, i, count) for i in range(count)]
    flat = [tp for share in shares for tp in share]
    assert sorted(flat) == sorted((t, p) for t, n in sizes.items() for p in range(n))
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize("text", ["", "1", "a/b", "2/2", "0/0", "-1/2", "1/2/3"])
def test_bad_share_says_what_to_fix(text: str) -> None:
    with pytest.raises(ValueError, match="partitions share"):
        parse_share(text)


def test_setting_validation() -> None:
    assert ConsumerSettings(partitions="1/3").partitions == "1/3"
    for bad in ("3/3", "x/2", "0/0"):
        with pytest.raises(ValidationError):
            ConsumerSettings(partitions=bad)
    with pytest.raises(ValidationError, match="either partitions"):
        ConsumerSettings(partitions="0/1", instance_id="c-1")


class FakeConsumer:
    """Only the metadata and assignment calls ManualAssignment makes (no broker involved)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.assigned: list[tuple[str, int]] = []
        self.paused: list[tuple[str, int]] = []

    def list_topics(self, timeout: float) -> Any:
        topics = {
            t: SimpleNamespace(error=None, partitions={p: None for p in range(n)})
            for t, n in self.sizes.items()
        }
        return SimpleNamespace(topics=topics)

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition) for tp in tps]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in tps]


def test_refresh_assigns_the_share_once_and_picks_up_new_partitions() -> None:
    consumer = FakeConsumer({"events": 4, "items": 1})
    manual = ManualAssignment(["events", "items", "impressions"], "0/2")
    manual.refresh(consumer, paused=False, force=True)  # type: ignore[arg-type]
    assert consumer.assigned == [("events", 0), ("events", 2), ("items", 0)]
    manual.refresh(consumer, paused=False, force=True)  # type: ignore[arg-type]
    assert len(consumer.assigned) == 3  # nothing assigned twice
    consumer.sizes["impressions"] = 2  # a topic created after start
    consumer.sizes["events"] = 6  # a topic grown
    new = manual.refresh(consumer, paused=True, force=True)  # type: ignore[arg-type]
    assert sorted((tp.topic, tp.partition) for tp in new) == [("events", 4), ("impressions", 0)]
    assert consumer.paused == [("events", 4), ("impressions", 0)]  # a sink outage is on: paused at once


def test_missing_topic_is_asked_again_soon() -> None:
    consumer = FakeConsumer({"events": 1})
    manual = ManualAssignment(["events", "items"], "0/1")
    manual.refresh(consumer, paused=False, force=True)  # type: ignore[arg-type]
    consumer.sizes["items"] = 1
    manual._next_at -= 1.5  # the short retry for a missing topic, not the 30 s refresh
    assert [tp.topic for tp in manual.refresh(consumer, paused=False)] == ["items"]  # type: ignore[arg-type]
