"""Process-level set-up shared by every command: settings and logging."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar, overload

from pydantic import ValidationError
from pydantic_settings import SettingsError

from core.errors import ConfigError, DependencyUnavailable, StreamrecError
from core.settings import Settings

S = TypeVar("S", bound=Settings)


@overload
def load_settings() -> Settings: ...


@overload
def load_settings(cls: type[S]) -> S: ...


def load_settings(cls: type[Settings] = Settings) -> Settings:
    """Build Settings (or the tooling's subclass) from the environment; a bad variable becomes one
    actionable line."""
    try:
        return cls()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = "__".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"setting STREAMREC_{path} is invalid: {err['msg']}") from None
    except SettingsError as exc:
        # Raised for list/object variables that are not valid JSON; pydantic names only the section.
        found = re.search(r'field "([^"]+)"', str(exc))
        section = found.group(1).upper() if found else "?"
        raise ConfigError(
            f"a STREAMREC_{section}__* setting is not valid JSON; list and object settings must be JSON,"
            " e.g. STREAMREC_SERVING__API_KEYS_READ='[\"key1\"]'"
        ) from None


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for every process: one record is one line whatever its text holds
    (ids with newlines or quotes are escaped by the JSON encoder, so a log line cannot be forged),
    with the HTTP request id on records logged while a request is handled."""
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    from core.log_context import RequestIdFilter

    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # ASCII-only output: U+2028 and friends, which some tools split lines on, are escaped too.
            json_ensure_ascii=True,
            # uvicorn's ``color_message`` extra repeats the message with terminal colour codes.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("httpx", "uvicorn.access", "pymongo", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def mongo_guard(settings: Settings) -> Iterator[None]:
    """MongoDB's errors as one actionable line (``cli.main`` prints a ``StreamrecError``, no traceback)."""
    from pymongo.errors import ConnectionFailure, PyMongoError

    try:
        yield
    except ConnectionFailure as exc:
        raise DependencyUnavailable(
            f"MongoDB (database {settings.mongo.database!r}) is unreachable ({exc.__class__.__name__}); "
            "is it running (`streamrec devstack up`) and is STREAMREC_MONGO__URI right?"
        ) from exc
    except PyMongoError as exc:
        raise StreamrecError(f"MongoDB refused the operation: {exc}") from exc
