"""Files of ``streamrec export recommendations``: the user list it reads and the JSON lines it resumes.

Resuming: the output holds one complete JSON object per line, each with the ``user_id`` it answers,
appended as each user is done. A run that was stopped (Ctrl-C, a crash, a full disk) can leave its
last line cut short; ``resume_output`` drops that partial line (the user is exported again) and
returns the users already present, which the next run skips. A complete line that is not an export
line means the file is something else, and nothing is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from core.errors import StreamrecError
from core.storable import control_character, has_lone_surrogate

MAX_USER_ID = 256
# Reported bad lines; beyond this only their number is given.
MAX_REPORTED = 20


class ExportInputError(StreamrecError):
    """A user list or an output file that cannot be used as it is."""


@dataclass
class Resume:
    done: set[str] = field(default_factory=set)
    lines: int = 0
    # Bytes of a cut-short last line removed from the file.
    repaired_bytes: int = 0


def user_id_problem(user_id: str) -> str | None:
    """Why ``user_id`` is not one the API would accept in its path, or None."""
    if not user_id:
        return "empty user id"
    if len(user_id) > MAX_USER_ID:
        return f"user id longer than {MAX_USER_ID} characters"
    if (ch := control_character(user_id)) is not None:
        return f"user id contains the control character {ch!a}"
    if has_lone_surrogate(user_id):
        return "user id is not valid UTF-8"
    return None


def parse_users(lines: Iterable[bytes]) -> tuple[list[str], list[tuple[int, str]]]:
    """User ids, one a line (surrounding spaces ignored; blank lines and lines starting with ``#``
    skipped; repeats kept once, in first-seen order), and the bad lines as (line number, why)."""
    users: dict[str, None] = {}
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            bad.append((number, "not valid UTF-8"))
            continue
        if not text or text.startswith("#"):
            continue
        problem = user_id_problem(text)
        if problem is not None:
            bad.append((number, problem))
            continue
        users[text] = None
    return list(users), bad


def read_users(path: Path) -> list[str]:
    """``parse_users`` of a file; raises ``ExportInputError`` naming the bad lines, if any."""
    try:
        with path.open("rb") as fh:
            users, bad = parse_users(fh)
    except OSError as exc:
        raise ExportInputError(f"cannot read the user list {path}: {exc.strerror or exc}") from None
    if bad:
        shown = "; ".join(f"line {n}: {why}" for n, why in bad[:MAX_REPORTED])
        more = f" (and {len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise ExportInputError(
            f"{path}: {len(bad)} bad line(s), nothing exported: {shown}{more}; "
            "fix or remove them and run again"
        )
    return users


def resume_output(path: Path) -> Resume:
    """Users already in ``path`` (missing: none), after cutting off a partial last line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Resume()
    except OSError as exc:
        raise ExportInputError(f"cannot read the output file {path}: {exc.strerror or exc}") from None
    complete = data.rfind(b"\n") + 1
    out = Resume(repaired_bytes=len(data) - complete)
    for number, line in enumerate(data[:complete].splitlines(), start=1):
        user_id = _user_of(line)
        if user_id is None:
            raise ExportInputError(
                f"{path} line {number} is not an export line (a JSON object with a user_id): it is not "
                "this command's output; choose another --out or move the file away"
            )
        out.done.add(user_id)
        out.lines += 1
    if out.repaired_bytes:
        with path.open("r+b") as fh:
            fh.truncate(complete)
            fh.flush()
            os.fsync(fh.fileno())
    return out


def _user_of(line: bytes) -> str | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    user_id = doc.get("user_id") if isinstance(doc, dict) else None
    return user_id if isinstance(user_id, str) else None


def export_line(answer: dict[str, object]) -> bytes:
    """One output line from a recommendations answer (what the API returns, minus nothing)."""
    return orjson.dumps(answer) + b"\n"
