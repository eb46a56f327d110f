"""Impressions against real servers: what serving answers lands on the impressions topic (live lists,
an A/B variant from the MongoDB experiment store, shadow lists), and with Kafka unreachable every
answer is still served while the drops are counted."""

from __future__ import annotations

import time
from typing import Any

from core.experiments import Experiment, Variant, assign
from core.impressions import Impression, parse_impression
from core.settings import ExperimentSettings, ImpressionSettings, Settings
from storage.experiments_mongo import MongoExperimentStore
from storage.kafka import make_consumer, wait_for_assignment
from storage.model_registry_mongo import open_model_registry
from tests.integration.test_serving_api import AUTH, live_app, with_keys
from tests.unit.test_serving_helpers import model_files
from tooling.devstack.probes import free_port


def with_topic(settings: Settings, topic: str) -> Settings:
    topics = settings.kafka.topics.model_copy(update={"impressions": topic})
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics})})


def read_impressions(settings: Settings, topic: str, n: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = make_consumer(settings.kafka, group_id=f"{settings.kafka.group_id}-impressions")
    try:
        consumer.subscribe([topic])
        wait_for_assignment(consumer)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            got += [m for m in consumer.consume(50, 0.5) if m.error() is None]
        return got
    finally:
        consumer.close()


def test_served_lists_land_on_the_impressions_topic(settings: Settings, kafka_topics: Any) -> None:
    topic = kafka_topics.create(f"impressions-{settings.kafka.group_id}", partitions=1)
    experiments = ExperimentSettings(poll_s=0.2, shadow_version="1", shadow_fraction=1.0)
    settings = with_topic(with_keys(settings, experiments=experiments), topic)
    registry = open_model_registry(settings)
    try:
        # Published before live_app publishes the champion (version 2): the candidate, version 1,
        # serves the treatment variant and runs in shadow.
        assert registry.publish(model_files(seed=1, users={"alice": "music"}), {}) == 1
    finally:
        registry.close()
    experiment = Experiment(
        experiment_id="exp-it",
        variants=[
            Variant(name="control", share=0.5),
            Variant(name="treatment", share=0.5, model_version="1"),
        ],
    )
    treated = next(f"u{n}" for n in range(200) if assign(experiment, f"u{n}").name == "treatment")
    store = MongoExperimentStore.from_settings(settings.mongo)
    try:
        store.create(experiment)
    finally:
        store.close()
    answers: list[dict[str, Any]] = []
    with live_app(settings) as client:
        holder = client.app.state.experiments  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while "1" not in holder.models or client.app.state.holder.current.version != "2":  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, f"experiment models not loaded: {holder.problems}"
            time.sleep(0.05)
        for path, params in [
            ("/v1/users/alice/recommendations", {"k": 3}),
            (f"/v1/users/{treated}/recommendations", {"k": 3}),
            ("/v1/items/books-1/similar", {"k": 2}),
            ("/v1/popular", {"k": 2}),
        ]:
            resp = client.get(path, params=params, headers=AUTH)
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
        assert (answers[1]["variant"], answers[1]["model_version"]) == ("treatment", "1")
    # Closing the app flushed the log: 4 live lists and 2 shadow lists (both recommendations).
    records = read_impressions(settings, topic, 6)
    parsed = [parse_impression(m.value()) for m in records]
    assert all(isinstance(p, Impression) for p in parsed), parsed
    by_id = {p.impression_id: p for p in parsed if isinstance(p, Impression)}
    assert len(by_id) == 6
    for body, surface in zip(
        answers, ["recommendations", "recommendations", "similar", "popular"], strict=True
    ):
        imp = by_id[body["request_id"]]
        assert imp.surface == surface and [s.item_id for s in imp.items] == [
            i["item_id"] for i in body["items"]
        ]
        assert imp.model_version == body["model_version"]
        shadow = by_id.get(f"{body['request_id']}:shadow")
        assert (shadow is not None) == (surface == "recommendations")
        if shadow is not None:
            assert shadow.shadow and shadow.model_version == "1" and shadow.request_id == body["request_id"]
    treated_imp = by_id[answers[1]["request_id"]]
    assert (treated_imp.experiment_id, treated_imp.variant) == ("exp-it", "treatment")
    assert {m.key() for m in records} >= {b"alice", treated.encode(), b"books-1"}


def test_kafka_unreachable_answers_200_and_counts_drops(settings: Settings) -> None:
    kafka = settings.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{free_port()}"})  # nothing listens
    impressions = ImpressionSettings(queue_max=2, batch_max=1, linger_s=0.0)
    settings = with_keys(settings, impressions=impressions).model_copy(update={"kafka": kafka})
    with live_app(settings) as client:
        for n in range(10):
            resp = client.get(f"/v1/users/u{n}/recommendations", params={"k": 3}, headers=AUTH)
            assert resp.status_code == 200 and len(resp.json()["items"]) == 3
        assert client.get("/v1/popular", headers=AUTH).status_code == 200
        counts = client.app.state.read.impression_log.counts()  # type: ignore[attr-defined]
        # One in the sender's hands, two queued: the rest could not be queued.
        assert counts.dropped["queue_full"] >= 8 and counts.sent == 0
        metrics = client.get("/metrics", headers=AUTH).text
        assert 'streamrec_serving_impressions_dropped_total{reason="queue_full"}' in metrics
        log = client.app.state.read.impression_log  # type: ignore[attr-defined]
        started = time.monotonic()
    # The app closed: the log gave up on the unreachable broker within its close timeout (5 s).
    assert time.monotonic() - started < 12.0
    final = log.counts()
    assert final.sent == 0 and sum(final.dropped.values()) == 11
