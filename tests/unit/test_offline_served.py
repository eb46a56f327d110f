"""The production path's inputs: a split's training events, and production's matrix in the split's layout."""

from __future__ import annotations

import numpy as np

from core.event_table import EventTable
from tooling.offline.served import production_inputs, settings_for, training_events
from tooling.offline.split import temporal_split


def _table() -> EventTable:
    # u1 touches a..e in order (e is test); then views a again after its cutoff (must not leak).
    rows = [("u1", x, "view", 10 * (n + 1)) for n, x in enumerate("abcde")]
    rows += [("u1", "a", "purchase", 15), ("u1", "a", "view", 100)]
    rows += [("u2", x, "view", 10 * (n + 1)) for n, x in enumerate("abcde")]
    users, items, kinds, ts = zip(*rows, strict=True)
    return EventTable(
        user_id=np.array(users),
        item_id=np.array(items),
        event_type=np.array(kinds),
        value=np.full(len(rows), np.nan),
        ts_ms=np.array(ts, dtype=np.int64),
    )


def test_training_events_stop_at_each_users_cutoff_and_skip_test_items() -> None:
    table = _table()
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    events = training_events(split, table)
    got = sorted(zip(events.user_id.tolist(), events.item_id.tolist(), events.ts_ms.tolist(), strict=True))
    assert ("u1", "a", 15) in got  # the purchase before the cutoff counts
    assert all(t <= 40 for _, _, t in got)  # the later view of a and the test item e do not
    assert {i for _, i, _ in got} == {"a", "b", "c", "d"}


def test_production_inputs_line_up_with_the_split() -> None:
    table = _table()
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    events = training_events(split, table)
    matrix, ranks = production_inputs(split, events, settings_for({"input_weighting": "linear"}))
    assert matrix.shape == split.train.shape
    assert (matrix.indptr == ranks.indptr).all() and (matrix.indices == ranks.indices).all()
    u1 = int(np.searchsorted(split.user_ids, "u1"))
    a = int(np.searchsorted(split.item_ids, "a"))
    assert matrix[u1, a] == 1.0 + 5.0  # view + purchase, production's weights
    binary, _ = production_inputs(split, events, settings_for({"input_weighting": "binary"}))
    assert set(binary.data.tolist()) == {1.0}
    # history order "first": a (first touched) is the oldest of u1's four training items.
    _, first = production_inputs(split, events, settings_for({"history_order": "first"}))
    assert first[u1, a] == 3.0
