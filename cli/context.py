"""Process-level set-up shared by every command: settings and logging."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import Settings


def load_settings() -> Settings:
    """Build Settings from the environment; a bad variable becomes one actionable line."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = "__".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"setting STREAMREC_{path} is invalid: {err['msg']}") from None


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for noisy in ("httpx", "uvicorn.access", "pymongo", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
