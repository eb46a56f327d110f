"""ConsumerRunner's outage handling, with the Kafka consumer replaced by a recording stand-in."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from consumer.runner import ConsumerRunner
from consumer.wiring import open_kafka
from core.settings import KafkaSettings, Settings
from storage.event_store_memory import InMemoryEventStore
from storage.impressions import InMemoryImpressionStore
from storage.realtime_state import InMemoryRealtimeState


class RecordingConsumer:
    def __init__(self) -> None:
        self.assigned: list[tuple[str, int]] = []
        self.paused: list[tuple[str, int]] = []
        self.resumed: list[tuple[str, int]] = []

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition) for tp in partitions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in partitions]

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed += [(tp.topic, tp.partition) for tp in partitions]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]


def runner() -> tuple[ConsumerRunner, RecordingConsumer]:
    # The real clients are built but never connect: nothing here polls them.
    settings = Settings(_env_file=None, kafka=KafkaSettings(bootstrap="127.0.0.1:1"))  # type: ignore[call-arg]
    built = ConsumerRunner(
        settings,
        InMemoryEventStore(),
        InMemoryRealtimeState("sr:"),
        open_kafka(settings),
        impressions=InMemoryImpressionStore(),
    )
    built.consumer.close()
    fake = RecordingConsumer()
    built.consumer = fake  # type: ignore[assignment]
    return built, fake


def test_partitions_assigned_during_an_outage_are_paused_at_once() -> None:
    run, fake = runner()
    fake.assigned = [("ev", 0)]
    run._pause()
    assert fake.paused == [("ev", 0)]
    new = [TopicPartition("ev", 1), TopicPartition("ev", 2)]
    run._on_assign(fake, new)  # type: ignore[arg-type]
    assert fake.assigned == [("ev", 0), ("ev", 1), ("ev", 2)]
    assert fake.paused == [("ev", 0), ("ev", 1), ("ev", 2)]
    run._resume()
    assert sorted(fake.resumed) == [("ev", 0), ("ev", 1), ("ev", 2)]


def test_partitions_assigned_normally_are_left_to_the_client() -> None:
    run, fake = runner()
    run._on_assign(fake, [TopicPartition("ev", 1)])  # type: ignore[arg-type]
    assert fake.assigned == [] and fake.paused == []


def test_the_grace_watchdog_is_armed_only_by_the_process_main(monkeypatch: Any) -> None:
    run, _ = runner()
    run.request_stop()
    assert run.stopping and run._watchdog is None  # in-process (tests, embedding): never os._exit
    fired: list[float] = []

    class FakeTimer:
        def __init__(self, interval: float, _fn: Any) -> None:
            fired.append(interval)
            self.daemon = False

        def start(self) -> None: ...

        def cancel(self) -> None: ...

    monkeypatch.setattr("consumer.runner.threading.Timer", FakeTimer)
    monkeypatch.setattr("consumer.runner.signal.signal", lambda *_: None)
    run2, _ = runner()
    run2.install_signal_handlers()
    run2.request_stop()
    assert fired == [run2.settings.consumer.shutdown_grace_s]
