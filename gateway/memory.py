"""Giving the memory the allocator keeps back to the system, once an hour (issue #11).

The gateway's threads (one per control connection, the tick, netlink) allocate and free
all day; glibc's malloc keeps what they free in its arenas for the next allocation. Under a
soak's churn the bytes in use stayed level while the arenas' free bytes stayed at 7–11 MB
and their footprint crept up (docs/reliability.md, "A week in minutes"). ``malloc_trim(0)``
hands every whole free page of every arena back to the kernel; it takes milliseconds, so
once an hour of monotonic time (a clock step neither hastens nor delays it) is enough for a
device that runs for months. On a C library without ``malloc_trim`` (musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 3600.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class FreedMemory:
    """``due()`` from the daemon's tick: at most once every ``every`` seconds, the freed
    memory the allocator holds goes back to the system."""

    def __init__(
        self,
        every: float = TRIM_SECONDS,
        trim: Callable[[int], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.every = every
        self.trim = trim if trim is not None else malloc_trim()
        self.monotonic = monotonic
        self.next_at = monotonic() + every
        self.trims = 0

    def due(self) -> bool:
        """Trim if an interval has passed; True when the allocator gave memory back."""
        now = self.monotonic()
        if self.trim is None or now < self.next_at:
            return False
        self.next_at = now + self.every
        self.trims += 1
        released = bool(self.trim(0))
        # Once an hour: worth a line (a soak counts them, an operator sees they happen).
        log.info("malloc_trim: %s", "memory given back" if released else "nothing to give")
        return released
