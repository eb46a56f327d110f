"""The consumer's Kafka clients, built by its entry point (``streamrec consume``) and handed to
``ConsumerRunner`` with the event store and the Redis state: the runner builds no client itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError

from consumer import metrics
from core.settings import Settings
from storage.kafka_producer import ResilientProducer

# The runner's error callback -> the group member. A factory, because the callback is the runner's
# own (it stops the loop on a fatal error) and librdkafka takes it only at construction.
ConsumerFactory = Callable[[Callable[[KafkaError], None]], Consumer]


@dataclass
class KafkaClients:
    consumer: ConsumerFactory
    # Dead letters; its own errors (fatal ones included) make it rebuild itself, never stop the consumer.
    dead_letters: ResilientProducer


def open_kafka(settings: Settings) -> KafkaClients:
    from storage.kafka import make_consumer, make_resilient_producer

    kafka = settings.kafka
    return KafkaClients(
        consumer=lambda error_cb: make_consumer(kafka, error_cb=error_cb),
        dead_letters=make_resilient_producer(
            kafka, name="dead-letter", on_rebuild=lambda _reason: metrics.PRODUCER_REBUILDS.inc()
        ),
    )
