"""The gateway's tick and Python's cyclic garbage collector (issue #12, item 4). What the
gateway and the sync agent share about memory (malloc_trim, the ceiling) is in
:mod:`hotspot.memory`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a tick's work, then its youngest generation
    collected on the tick's own thread (issue #12, item 4).

    A tick at 10,000 sessions makes some hundreds of thousands of short-lived objects (the
    rows it reads, the readings, the plan). With the collector on, the young collections
    that their allocation triggers find them still alive and promote them, and the oldest
    generation then grew by a quarter almost every tick: a full collection of every object
    of the process, 140–220 ms holding the interpreter — any login of that moment waited
    for it (bench/README.md, "The tick at 10,000 sessions"). Paused, the tick's objects are
    freed by their reference counts as before (they make no cycles that must go sooner),
    nothing is promoted, and one young collection afterwards (2–7 ms at 10,000 sessions)
    runs here rather than in whichever login allocates next. A collector already off (a
    caller's, a test's) is left as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)
