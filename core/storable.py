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

import unicodedata
from dataclasses import dataclass
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The schema nests at most two levels (event → properties); deeper values are never valid, and a
# bound keeps the walk cheap.
MAX_DEPTH = 8
# Bounds the walk on decoded HTTP bodies (the byte path is already capped at 64 KiB).
MAX_NODES = 4096
# Unicode line and paragraph separators split log lines in many viewers, like \n does.
_LINE_BREAKS = {"\u2028", "\u2029"}

STORABLE_CODES = frozenset(
    {"invalid_key", "control_character", "integer_out_of_range", "invalid_unicode", "too_deep"}
)


@dataclass(frozen=True)
class Problem:
    code: str
    reason: str
    field: str | None = None


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def control_character(text: str) -> str | None:
    """The first C0/DEL/C1 control character or line separator in ``text`` (None if clean)."""
    for ch in text:
        if ch in _LINE_BREAKS or unicodedata.category(ch) == "Cc":
            return ch
    return None


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


def _path(parent: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{parent}[{part}]"
    name = part if part.isidentifier() else ascii(part)
    return f"{parent}.{name}" if parent else name


def scan(value: Any) -> Problem | None:
    """The first thing in a decoded JSON value that BSON or MongoDB cannot hold, or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    nodes = 0
    while stack:
        node, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return Problem("oversized", f"value holds more than {MAX_NODES} JSON values")
        if isinstance(node, str):
            if has_lone_surrogate(node):
                return Problem(
                    "invalid_unicode", f"field '{path}' holds a lone UTF-16 surrogate", path or None
                )
        elif isinstance(node, bool) or node is None or isinstance(node, float):
            continue
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                return Problem(
                    "integer_out_of_range",
                    f"field '{path}' holds {node}, outside the signed 64-bit range",
                    path or None,
                )
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                return Problem("too_deep", f"value nests deeper than {MAX_DEPTH} levels", path or None)
            if isinstance(node, list):
                stack.extend((v, _path(path, i), depth + 1) for i, v in enumerate(node))
                continue
            for key, child in node.items():
                if not isinstance(key, str):
                    return Problem("invalid_key", f"key {key!r} in '{path}' is not text", path or None)
                if has_lone_surrogate(key):
                    return Problem(
                        "invalid_unicode", f"a key in '{path or '.'}' holds a lone UTF-16 surrogate"
                    )
                if "\x00" in key:
                    return Problem("invalid_key", f"key {key!a} contains a NUL character", _path(path, key))
                stack.append((child, _path(path, key), depth + 1))
    return None
