"""What MongoDB, BSON and Redis can hold: the checks that make "parsed" imply "storable".

The parser must never accept a record the sinks later refuse, or one poison record blocks its
partition. BSON cannot hold NUL in a key, lone UTF-16 surrogates (they have no UTF-8 form) or
integers outside signed 64 bits; MongoDB treats keys starting with ``$`` or holding ``.`` as
operators and paths; ids end up in Redis keys and log lines, where control characters do harm.

``scan`` walks any decoded JSON value (iteratively, so a deep HTTP body cannot exhaust the Python
stack) and reports the first problem; the id and property-key checks are called from the schema's
validators. Reasons quote offending text with ``ascii()`` so they stay on one line and encode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The schema nests at most two levels (event → properties); deeper values are never valid, and a
# bound keeps the walk cheap.
MAX_DEPTH = 8
# Bounds the walk on decoded HTTP bodies (the byte path is already capped at 64 KiB).
MAX_NODES = 4096
# C0 controls (NUL included), DEL and C1 controls are Unicode's category Cc; the line and paragraph
# separators U+2028/U+2029 split log lines in many viewers, like \n does.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")

STORABLE_CODES = frozenset(
    {"invalid_key", "control_character", "integer_out_of_range", "invalid_unicode", "too_deep"}
)


@dataclass(frozen=True)
class Problem:
    code: str
    reason: str
    field: str | None = None


def has_lone_surrogate(text: str) -> bool:
    # A Python str holds a surrogate code point only when it came from an unpaired escape.
    return not text.isascii() and _SURROGATE.search(text) is not None


def control_character(text: str) -> str | None:
    """The first C0/DEL/C1 control character or line separator in ``text`` (None if clean)."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def property_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a property key (a MongoDB field name), or None."""
    if key.startswith("$"):
        return f"property key {key!a} starts with '$' (MongoDB reserves it for operators)"
    if "." in key:
        return f"property key {key!a} contains '.' (MongoDB reads it as a path)"
    if "\x00" in key:
        return f"property key {key!a} contains a NUL character"
    if control_character(key) is not None:
        return f"property key {key!a} contains a control character"
    return None


Chain = tuple["Chain", str | int] | None  # (parent chain, key or index); None is the root


def _path(chain: Chain) -> str | None:
    """Render a chain as ``properties.n`` / ``x[0]``; None at the root."""
    parts: list[str | int] = []
    while chain is not None:
        chain, part = chain
        parts.append(part)
    out = ""
    for part in reversed(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if part.isidentifier() else ascii(part)
            out = f"{out}.{name}" if out else name
    return out or None


def _plainly_clean(obj: dict[Any, Any], nested: bool = False) -> bool:
    """Fast path for the usual shape (an object of scalars, with objects of scalars one level down).

    True only when nothing in ``obj`` needs the full walk; False means "walk it" (not "bad"). The
    size bounds keep a True answer within MAX_NODES and MAX_DEPTH.
    """
    if len(obj) > (32 if nested else 64):
        return False
    surrogate = _SURROGATE.search  # inlined checks: this loop runs for every field of every event
    for key, val in obj.items():
        if type(key) is not str or "\x00" in key or (not key.isascii() and surrogate(key)):
            return False
        kind = type(val)
        if kind is str:
            if not val.isascii() and surrogate(val):
                return False
        elif kind is int:
            if not INT64_MIN <= val <= INT64_MAX:
                return False
        elif kind is dict:
            if nested or not _plainly_clean(val, nested=True):
                return False
        elif not (kind is float or kind is bool or val is None):
            return False
    return True


def scan(value: Any) -> Problem | None:
    """The first thing in a decoded JSON value that BSON or MongoDB cannot hold, or None.

    Runs for every event: the usual shape takes ``_plainly_clean``; the full walk keeps paths as
    linked tuples and renders one only for the problem it reports.
    """
    if type(value) is dict and _plainly_clean(value):
        return None
    return walk(value)


def walk(value: Any) -> Problem | None:
    """``scan`` without the fast path (the reference the fast path is tested against)."""
    stack: list[tuple[Any, Chain, int]] = [(value, None, 0)]
    nodes = 0
    while stack:
        node, chain, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return Problem("oversized", f"value holds more than {MAX_NODES} JSON values")
        kind = type(node)
        if kind is str:
            if has_lone_surrogate(node):
                path = _path(chain)
                return Problem("invalid_unicode", f"field '{path}' holds a lone UTF-16 surrogate", path)
        elif kind is int or (isinstance(node, int) and kind is not bool):
            if not INT64_MIN <= node <= INT64_MAX:
                path = _path(chain)
                return Problem(
                    "integer_out_of_range",
                    f"field '{path}' holds {node}, outside the signed 64-bit range",
                    path,
                )
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                return Problem("too_deep", f"value nests deeper than {MAX_DEPTH} levels", _path(chain))
            if isinstance(node, list):
                stack.extend((v, (chain, i), depth + 1) for i, v in enumerate(node))
                continue
            for key, child in node.items():
                if type(key) is not str:
                    return Problem("invalid_key", f"key {key!r} is not text", _path(chain))
                if not key.isascii() and has_lone_surrogate(key):
                    return Problem("invalid_unicode", "a key holds a lone UTF-16 surrogate", _path(chain))
                if "\x00" in key:
                    path = _path((chain, key))
                    return Problem("invalid_key", f"key {key!a} contains a NUL character", path)
                stack.append((child, (chain, key), depth + 1))
        elif isinstance(node, str) and has_lone_surrogate(node):  # a str subclass
            return Problem("invalid_unicode", "a string holds a lone UTF-16 surrogate", _path(chain))
    return None
