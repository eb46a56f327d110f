"""Event-table filters applied before the offline split (``tooling.offline.split``)."""

from __future__ import annotations

import logging

import numpy as np

from core.event_table import EventTable

logger = logging.getLogger(__name__)


def drop_rare_items(table: EventTable, min_users: int) -> EventTable:
    """Only the events of items that at least ``min_users`` distinct users touched (1 keeps everything).

    One pass, not iterated to a fixed point: users who fall below the split's minimum afterwards are
    dropped by the split itself. A long tail of items seen by one or two users (Taobao's head: most of
    its catalog) is noise no collaborative model can rank; the filter makes that visible in a second row
    rather than hiding it."""
    if min_users < 1:
        raise ValueError(f"min_users must be >= 1, got {min_users}")
    if min_users == 1 or len(table) == 0:
        return table
    items, i_idx = np.unique(table.item_id, return_inverse=True)
    users, u_idx = np.unique(table.user_id, return_inverse=True)
    pairs = np.unique(i_idx.astype(np.int64) * len(users) + u_idx)
    distinct_users = np.bincount(pairs // len(users), minlength=len(items))
    keep = distinct_users[i_idx] >= min_users
    logger.info(
        "rare_items_dropped min_users=%d items_kept=%d/%d events_kept=%d/%d",
        min_users,
        int((distinct_users >= min_users).sum()),
        len(items),
        int(keep.sum()),
        len(table),
    )
    return EventTable(
        user_id=table.user_id[keep],
        item_id=table.item_id[keep],
        event_type=table.event_type[keep],
        value=table.value[keep],
        ts_ms=table.ts_ms[keep],
    )
