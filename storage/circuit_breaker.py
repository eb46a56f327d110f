"""A small circuit breaker: a dead dependency costs one timeout, then calls fail fast until a probe."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; let one probe through every ``reset_s``."""

    def __init__(self, threshold: int = 2, reset_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self.threshold and (self._probing or self._clock() < self._open_until)

    def allow(self) -> bool:
        if self._failures < self.threshold:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self.threshold:
            self._open_until = self._clock() + self.reset_s

    def abandon(self) -> None:
        """The call ended without telling whether the dependency works (it was cancelled): free the
        probe slot, or no probe would ever run again."""
        self._probing = False
