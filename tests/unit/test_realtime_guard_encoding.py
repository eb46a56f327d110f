"""The guarded Lua apply's JSON argument: the inlined zadd/zincrby encoding must give exactly what
``redis_args`` gives for every op (the text Redis stores: repr of a float, str of the rest)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from core.realtime_ops import Op
from storage.realtime_guard import ops_script_call, redis_args

_KEYS = st.sampled_from(["{u1}:recent", "{u1}:seen", "{pop}:all", "{pop}:h:1700000000"])
_MEMBERS = st.one_of(st.text(max_size=8), st.integers(-3, 3))
_SCORES = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False))
_OPS = st.one_of(
    st.builds(lambda k, m, s: Op("zadd", k, (m, s)), _KEYS, _MEMBERS, _SCORES),
    st.builds(lambda k, m, s: Op("zincrby", k, (m, s)), _KEYS, _MEMBERS, _SCORES),
    st.builds(lambda k, m: Op("sadd", k, (m,)), _KEYS, _MEMBERS),
    st.builds(lambda k: Op("incr", k), _KEYS),
    st.builds(lambda k, t: Op("expireat", k, (t,)), _KEYS, st.integers(0, 2**33)),
    st.builds(lambda k: Op("zremrangebyrank", k, (0, -101)), _KEYS),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(_OPS, max_size=12))
def test_encoded_ops_are_redis_args_of_each_op(ops: list[Op]) -> None:
    keys, argv = ops_script_call(ops)
    decoded: list[list[Any]] = orjson.loads(argv[0])
    assert len(decoded) == len(ops)
    for op, (name, k, *args) in zip(ops, decoded, strict=True):
        assert name == op.name
        assert keys[k - 1] == op.key  # Lua counts KEYS from 1
        assert args == redis_args(op.name, op.args)
    assert len(keys) == len(set(keys)) == len({op.key for op in ops})


def test_a_float_score_travels_as_its_exact_repr() -> None:
    _keys, argv = ops_script_call([Op("zincrby", "{pop}:all", ("i1", 0.1 + 0.2))])
    assert orjson.loads(argv[0]) == [["zincrby", 1, "0.30000000000000004", "i1"]]
