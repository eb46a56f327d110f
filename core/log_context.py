"""Per-request log context: the request id of the HTTP request being handled, for every log record.

The id lives in a ContextVar (each request runs in its own task, so concurrent requests never see
each other's id); ``RequestIdFilter`` copies it onto log records and the JSON formatter writes it.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("streamrec_request_id", default=None)
# An incoming X-Request-ID is kept only when it is short and plain: it goes into logs, headers and
# error bodies, so anything else (newlines, quotes, very long values) is replaced by a fresh id.
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    # 128 random bits, hex: what uuid4().hex gives, without building a UUID object.
    return os.urandom(16).hex()


def sane_request_id(candidate: str | None) -> str:
    """``candidate`` when it is a usable request id, else a new one."""
    if candidate and _SANE_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str:
    """The id of the request being handled; a fresh one outside any request."""
    found = REQUEST_ID.get()
    return found if found is not None else new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True
