import numpy as np
import pytest

from tooling.offline.input_weights import event_strengths, input_matrix, pair_strengths
from tooling.offline.split import temporal_split


def test_event_strengths_use_type_weights_and_rating_values() -> None:
    types = np.array(["view", "purchase", "rate", "rate", "unknown"])
    values = np.array([np.nan, np.nan, 4.0, np.nan, np.nan])
    assert event_strengths(types, values).tolist() == [1.0, 5.0, 4.0, 0.0, 0.0]
    assert event_strengths(types).tolist() == [1.0, 5.0, 1.0, 1.0, 0.0]
    assert event_strengths(types, values, {"view": 2.0}).tolist() == [2.0, 0.0, 0.0, 0.0, 0.0]


def _events() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = [
        # u1: i1..i5 in time order; i5 is test (ceil(0.2 * 5) = 1); i1 is viewed twice and bought after
        # the training cutoff (ts 100, in the test period): that purchase must not count.
        ("u1", "i1", "view", 1),
        ("u1", "i2", "add_to_cart", 2),
        ("u1", "i1", "view", 3),
        ("u1", "i3", "view", 4),
        ("u1", "i4", "view", 5),
        ("u1", "i5", "view", 6),
        ("u1", "i1", "purchase", 100),
        ("u1", "i2", "mystery", 4),  # unknown type adds 0
        ("u1", "i3", "mystery", 4),
    ]
    users, items, types, ts = (np.array(c) for c in zip(*rows, strict=True))
    return users, items, types, ts.astype(np.int64)


def test_pair_strengths_sum_past_events_of_training_pairs_only() -> None:
    users, items, types, ts = _events()
    split = temporal_split(users, items, ts)
    strength = pair_strengths(split, users, items, ts, event_strengths(types, np.full(len(ts), np.nan)))
    assert (strength.indptr == split.train.indptr).all() and (strength.indices == split.train.indices).all()
    got = {str(split.item_ids[c]): float(v) for c, v in zip(strength.indices, strength.data, strict=True)}
    assert got == {"i1": 2.0, "i2": 3.0, "i3": 1.0, "i4": 1.0}


def test_pair_strengths_of_a_validation_fold_use_its_own_cutoff() -> None:
    users, items, types, ts = _events()
    extra = [("u1", f"j{k}", "view", 10 + k) for k in range(5)] + [("u1", "i1", "purchase", 11)]
    e_users, e_items, e_types, e_ts = (np.array(c) for c in zip(*extra, strict=True))
    users, items = np.concatenate([users, e_users]), np.concatenate([items, e_items])
    types, ts = np.concatenate([types, e_types]), np.concatenate([ts, e_ts.astype(np.int64)])
    split = temporal_split(users, items, ts)  # 10 items -> last 2 test (j3, j4); cutoff ts 12
    val = split.validation()  # 8 items -> last 2 test (j1, j2); cutoff ts 10
    s = event_strengths(types, np.full(len(ts), np.nan))
    full = pair_strengths(split, users, items, ts, s)
    inner = pair_strengths(val, users, items, ts, s)
    col = int(np.searchsorted(split.item_ids, "i1"))
    assert full[0, col] == 7.0  # two views and the purchase at 11, before the cutoff at 12
    assert inner[0, int(np.searchsorted(val.item_ids, "i1"))] == 2.0  # the purchase is after 10


def test_input_matrix_modes() -> None:
    users, items, types, ts = _events()
    split = temporal_split(users, items, ts)
    strength = pair_strengths(split, users, items, ts, event_strengths(types, np.full(len(ts), np.nan)))
    assert input_matrix(split, strength, "binary") is split.train
    assert input_matrix(split, None, "log") is split.train
    assert np.allclose(input_matrix(split, strength, "strength").data, strength.data)
    assert np.allclose(input_matrix(split, strength, "log").data, 1.0 + np.log(strength.data))
    with pytest.raises(ValueError, match="unknown input mode"):
        input_matrix(split, strength, "cubic")
