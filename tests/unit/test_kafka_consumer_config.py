"""The exact configuration the consumer sends to a real Apache Kafka, and static group membership.

Measured recovery on the dev broker is in BENCHMARKS.md; what Apache Kafka does with these settings
cannot be run here, so this pins what it receives: every key a librdkafka property, every value
inside Apache Kafka's broker-side limits.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from consumer.runner import ConsumerRunner
from consumer.wiring import KafkaClients, open_kafka
from core.settings import ConsumerSettings, KafkaSettings, Settings
from storage.event_store_memory import InMemoryEventStore
from storage.impressions import InMemoryImpressionStore
from storage.kafka import consumer_config, refuses_static_membership, resolve_instance_id
from storage.realtime_state import InMemoryRealtimeState

# Apache Kafka's broker defaults (group.min/max.session.timeout.ms) and its instance id rules.
KAFKA_MIN_SESSION_MS, KAFKA_MAX_SESSION_MS = 6000, 1_800_000
LEGAL_ID = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def product_settings(**consumer: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        kafka=KafkaSettings(bootstrap="kafka-1:9092,kafka-2:9092"),
        consumer=ConsumerSettings(**consumer),
    )


def test_the_group_member_configuration_sent_to_apache_kafka() -> None:
    settings = product_settings(instance_id="consumer-{hostname}")
    instance_id = resolve_instance_id(settings.consumer.instance_id, hostname="streamrec-consumer-7f9c")
    conf = consumer_config(settings.kafka, instance_id=instance_id)
    assert conf == {
        "bootstrap.servers": "kafka-1:9092,kafka-2:9092",
        "security.protocol": "PLAINTEXT",
        "group.id": "streamrec-consumer",
        "group.instance.id": "consumer-streamrec-consumer-7f9c",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000,
        "max.poll.interval.ms": 300_000,
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 30_000,
        "queued.max.messages.kbytes": 8192,
    }
    assert KAFKA_MIN_SESSION_MS <= conf["session.timeout.ms"] <= KAFKA_MAX_SESSION_MS
    assert conf["heartbeat.interval.ms"] * 3 <= conf["session.timeout.ms"]
    assert LEGAL_ID.match(conf["group.instance.id"])
    # librdkafka accepts every key and value (it rejects unknown ones at construction, offline).
    Consumer(conf).close()


def test_dynamic_membership_sends_no_instance_id() -> None:
    settings = product_settings()
    assert settings.consumer.instance_id is None
    assert resolve_instance_id(settings.consumer.instance_id) is None
    assert "group.instance.id" not in consumer_config(settings.kafka, instance_id=None)


@pytest.mark.parametrize(
    ("template", "hostname", "expected"),
    [
        ("consumer-{hostname}", "web 1.example.com", "consumer-web-1.example.com"),
        ("consumer-a-{hostname}", "host", "consumer-a-host"),
        ("consumer-b-{hostname}", "host", "consumer-b-host"),
        ("fixed-id", "ignored", "fixed-id"),
        ("{hostname}", "", "host"),
    ],
)
def test_instance_id_template(template: str, hostname: str, expected: str) -> None:
    resolved = resolve_instance_id(template, hostname=hostname)
    assert resolved == expected
    assert LEGAL_ID.match(resolved)


def test_errors_that_turn_a_static_member_dynamic() -> None:
    assert refuses_static_membership(KafkaError(KafkaError.FENCED_INSTANCE_ID))
    assert refuses_static_membership(KafkaError(KafkaError.UNSUPPORTED_VERSION))
    assert not refuses_static_membership(KafkaError(KafkaError._TRANSPORT))
    assert not refuses_static_membership(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))


class FakeMember:
    def __init__(self, static: bool) -> None:
        self.static = static
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
        self.subscribed = topics

    def assignment(self) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


def test_a_refused_static_member_rejoins_as_a_dynamic_one() -> None:
    settings = product_settings(instance_id="consumer-{hostname}")
    real = open_kafka(settings)
    built: list[FakeMember] = []

    def factory(_error_cb: Any, static: bool) -> Consumer:
        built.append(FakeMember(static))
        return built[-1]  # type: ignore[return-value]

    kafka = KafkaClients(consumer=factory, dead_letters=real.dead_letters, instance_id="consumer-h")
    runner = ConsumerRunner(
        settings,
        InMemoryEventStore(),
        InMemoryRealtimeState("sr:"),
        kafka,
        impressions=InMemoryImpressionStore(),
    )
    assert runner.static and built[0].static
    runner._on_error(KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True))
    runner._check_fatal()  # deferred to the loop: no FatalKafkaError for a refused static member
    runner._rejoin_dynamic(["ev"])
    assert built[0].closed
    assert [m.static for m in built] == [True, False]
    assert built[1].subscribed == ["ev"]
    assert not runner.static
    runner.producer.close(0)
