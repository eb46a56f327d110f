import numpy as np

from tooling.offline.split import temporal_split


def test_split_protocol_by_hand() -> None:
    rows = []
    # u1: 6 items -> ceil(1.2) = 2 test items (the two latest); a repeat of i1 keeps the first timestamp.
    rows += [("u1", f"i{k}", 10 * k) for k in range(1, 7)]
    rows += [("u1", "i1", 1000)]
    # u2: 5 items -> ceil(1.0) = 1 test item, "new" is never seen in training and is dropped;
    # u2 trains on i5/i6, which keeps u1's test items.
    rows += [("u2", "i3", 1), ("u2", "i4", 2), ("u2", "i5", 3), ("u2", "i6", 4), ("u2", "new", 5)]
    # u3: 4 items -> filtered out (< 5).
    rows += [("u3", f"i{k}", k) for k in range(1, 5)]
    users, items, ts = (np.array(col) for col in zip(*rows, strict=True))
    split = temporal_split(users, items, ts)
    assert split.user_ids.tolist() == ["u1", "u2"]
    assert "new" not in split.item_ids.tolist()
    test_u1 = sorted(split.item_ids[split.test[0].indices].tolist())
    assert test_u1 == ["i5", "i6"]
    assert split.test[1].nnz == 0
    assert sorted(split.item_ids[split.train[0].indices].tolist()) == ["i1", "i2", "i3", "i4"]
    assert split.train[1].nnz == 4
    # i1's pair keeps its first timestamp (10), not the repeat's (1000)
    col = int(np.searchsorted(split.item_ids, "i1"))
    assert split.train_ts[0, col] == 10


def test_validation_split_is_inside_training() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{k}" for k in range(20)], 12)
    items = np.array([f"i{k}" for k in rng.integers(0, 30, len(users))])
    ts = np.arange(len(users))
    split = temporal_split(users, items, ts)
    val = split.validation()
    assert set(val.item_ids.tolist()) <= set(split.item_ids.tolist())
    assert val.train.nnz + val.test.nnz <= split.train.nnz
    recency = split.recency_ranks()
    assert recency.nnz == split.train.nnz
    assert recency[0].data.min() == 0
