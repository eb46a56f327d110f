"""``EventTable``: a batch of interaction events as parallel numpy arrays.

What retraining reads from the event store (``retrain.event_source``) and what the offline data-set
readers (``tooling.offline.datasets``) return: one row per event of (user_id, item_id, event_type, value,
ts_ms), value NaN where the event carries none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

Row = tuple[str, str, str, float | None, int]


@dataclass(frozen=True)
class EventTable:
    user_id: np.ndarray
    item_id: np.ndarray
    event_type: np.ndarray
    value: np.ndarray  # float64, NaN where the event carries no value
    ts_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user_id)

    def rows(self) -> Iterator[Row]:
        for u, i, e, v, t in zip(
            self.user_id, self.item_id, self.event_type, self.value, self.ts_ms, strict=True
        ):
            yield str(u), str(i), str(e), None if np.isnan(v) else float(v), int(t)
