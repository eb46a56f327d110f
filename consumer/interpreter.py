"""The consumer process's garbage-collector settings, applied once by its entry point.

Every batch allocates tens of thousands of short-lived containers (decoded records, validated
events, documents, Redis ops) that reference counting frees, but the default collector (a young
generation of 700 objects) still runs a collection every few hundred allocations and promotes what
is alive at that moment, so the older generations fill up and their collections walk the whole heap,
including everything the imports created. Measured on the consumer's batch path: about 6 µs of
collector time per event by default (BENCHMARKS.md, ingest). Freezing the start-up heap takes it
out of every later collection; a larger young generation makes collections rare. Reference cycles
are still collected, just later.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
