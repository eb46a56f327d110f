"""``make test``'s pytest entry point: the whole session, then an exit that cannot hang.

A CI run once printed nothing after the last test but librdkafka's reconnect messages and was
killed an hour later: the session had finished, and the interpreter's shutdown (joining non-daemon
threads, destroying client handles that tests leaked) did not. Nothing useful happens after pytest
has reported, so this leaves with pytest's own exit status and skips the interpreter's shutdown.
Non-daemon threads still alive at that point are named on stderr: each one is a leak to fix.

Plain ``pytest`` still works for local runs; this only guards the unattended one.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest


def main(args: list[str]) -> int:
    code = int(pytest.main(args))
    lingering = sorted(
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    )
    if lingering:
        print(f"tests.run_suite: threads still running after the session: {lingering}", file=sys.stderr)
    return code


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
