"""The consumer's Kafka clients, built by its entry point (``streamrec consume``) and handed to
``ConsumerRunner`` with the event store and the Redis state: the runner builds no client itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException

from consumer import metrics
from core.settings import Settings
from storage.kafka_producer import ResilientProducer

log = logging.getLogger(__name__)

# (the runner's error callback, static membership wanted) -> the group member. A factory, because the
# callback is the runner's own (it stops the loop on a fatal error) and librdkafka takes it only at
# construction, and because a broker that refuses static membership gets a dynamic member instead.
ConsumerFactory = Callable[[Callable[[KafkaError], None], bool], Consumer]


@dataclass
class KafkaClients:
    consumer: ConsumerFactory
    # Dead letters; its own errors (fatal ones included) make it rebuild itself, never stop the consumer.
    dead_letters: ResilientProducer
    # The resolved ``group.instance.id`` (STREAMREC_CONSUMER__INSTANCE_ID), None for dynamic membership.
    instance_id: str | None = None


def open_kafka(settings: Settings) -> KafkaClients:
    from storage.kafka import consumer_config, make_consumer, make_resilient_producer, resolve_instance_id

    kafka = settings.kafka
    instance_id = resolve_instance_id(settings.consumer.instance_id)

    def consumer(error_cb: Callable[[KafkaError], None], static: bool) -> Consumer:
        if static and instance_id:
            try:
                return Consumer(consumer_config(kafka, instance_id=instance_id, error_cb=error_cb))
            except KafkaException as exc:
                # A client library too old for group.instance.id refuses the key itself.
                log.warning(
                    "event=static_membership_unavailable instance_id=%s action=dynamic_membership error=%s",
                    instance_id,
                    exc,
                )
        return make_consumer(kafka, error_cb=error_cb)

    return KafkaClients(
        consumer=consumer,
        dead_letters=make_resilient_producer(
            kafka, name="dead-letter", on_rebuild=lambda _reason: metrics.PRODUCER_REBUILDS.inc()
        ),
        instance_id=instance_id,
    )
