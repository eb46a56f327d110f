"""What the client raises: one base class, the API's own errors by status (each carries the API's
``code``, ``message`` and ``request_id``), transport failures, and the producer's refusals."""

from __future__ import annotations

from typing import Any


class StreamrecError(Exception):
    """Base of everything this package raises."""


class ApiError(StreamrecError):
    """The API answered with an error status; ``code`` and ``message`` are the API's reason."""

    status: int = 0

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        # Quote it in a support request: the server logs it with the request.
        self.request_id = request_id


class BadRequest(ApiError):
    """400: the request could not be decoded, or an item filter is refused (code ``invalid_filter``).

    A filter without ':' is refused by the client before sending, as this same type and code (so one
    except clause serves both), with ``request_id`` None."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown one."""


class Forbidden(ApiError):
    """403: the key lacks the scope (read, ingest, admin)."""


class NotFound(ApiError):
    """404: e.g. similar items of an item the model does not know (code ``unknown_item``)."""


class Conflict(ApiError):
    """409."""


class PayloadTooLarge(ApiError):
    """413: the body is over serving.max_body_bytes."""


class InvalidRequest(ApiError):
    """422: a parameter or body the API refuses; ``message`` names it."""


class Unavailable(ApiError):
    """503: a dependency is down (no model yet, Kafka did not acknowledge); retried for GETs."""


class ServerError(ApiError):
    """Any other status >= 500."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    503: Unavailable,
}


def api_error(status: int, body: Any, header_request_id: str | None) -> ApiError:
    """The typed error for an error response (its ``{"error": {...}}`` body, or whatever came)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "http_error")
        message = str(error.get("message") or "")
        request_id = error.get("request_id") or header_request_id
    else:  # not the API's shape: a proxy in between answered
        code, message, request_id = "http_error", str(body)[:500], header_request_id
    kind = BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return kind(status, code, message, request_id)


class TransportError(StreamrecError):
    """No answer: connection refused or reset, or the timeout passed (after the retries, for GETs)."""


class InvalidEvent(StreamrecError):
    """The producer refused an event before sending it: the consumer would have dead-lettered it.

    ``code``, ``reason`` and ``field`` are core.events.ParseError's, as the consumer would report them."""

    def __init__(self, code: str, reason: str, field: str | None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.field = field


class DeliveryError(StreamrecError):
    """Records the broker did not acknowledge; ``failures`` holds (topic, key, error) per record."""

    def __init__(self, failures: list[tuple[str, str, str]], undelivered: int = 0) -> None:
        parts = [f"{len(failures)} record(s) failed"] if failures else []
        if undelivered:
            parts.append(f"{undelivered} still unacknowledged when the flush timed out")
        detail = "; ".join(f"{topic}[{key}]: {err}" for topic, key, err in failures[:5])
        super().__init__(", ".join(parts) + (f": {detail}" if detail else ""))
        self.failures = failures
        self.undelivered = undelivered
