"""A typed Python client for streamrec: the HTTP API (sync and async) and a Kafka producer helper.

    from streamrec_client import StreamrecClient, EventProducer

    with StreamrecClient("http://recs:8000", api_key="...") as api:
        recs = api.recommendations("user-42", k=10)
        page = api.rerank("user-42", ["sku-1", "sku-7", "sku-3"])

    with EventProducer("kafka:9092") as producer:
        producer.send({"event_id": "e-1", "event_type": "view", "user_id": "user-42",
                       "item_id": "sku-7", "timestamp": "2026-01-01T12:00:00Z"})

It depends on core (the event models the consumer validates with), httpx, tenacity and
confluent-kafka; never on the serving, consumer or retrain roles. See docs/clients.md.
"""

from streamrec_client.client import AsyncStreamrecClient, StreamrecClient
from streamrec_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DeliveryError,
    Forbidden,
    InvalidEvent,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    StreamrecError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from streamrec_client.producer import EventProducer

__all__ = [
    "ApiError",
    "AsyncStreamrecClient",
    "BadRequest",
    "Conflict",
    "DeliveryError",
    "EventProducer",
    "Forbidden",
    "InvalidEvent",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "StreamrecClient",
    "StreamrecError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
]
