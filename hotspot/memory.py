"""A long-running daemon's memory (issue #11): the freed memory the allocator keeps, given
back to the system once an hour, and the ceiling past which the daemon restarts itself. The
gateway and the sync agent use both.

A daemon's threads allocate and free all day; glibc's malloc keeps what they free in its
arenas for the next allocation. Under a soak's churn the gateway's bytes in use stayed level
while the arenas' free bytes stayed at 7–11 MB and their footprint crept up
(docs/reliability.md, "A week in minutes"). ``malloc_trim(0)`` hands every whole free page of
every arena back to the kernel; it takes milliseconds, so once an hour of monotonic time (a
clock step neither hastens nor delays it) is enough for a device that runs for months. On a
C library without ``malloc_trim`` (musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 3600.0
# The exit status after the memory ceiling (EX_TEMPFAIL: try again). systemd's
# Restart=always starts the daemon again; `systemctl status` shows the status.
EXIT_MEMORY_CEILING = 75
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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
    """``due()`` from the daemon's loop: at most once every ``every`` seconds, the freed
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


def resident_mb() -> float:
    """This process's resident set size, in MiB (``/proc/self/statm``: one read, ~20 µs)."""
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[1])
    return pages * PAGE_SIZE / 2**20


class MemoryCeiling:
    """``exceeded()`` from the daemon's loop: the resident size once it is past
    ``limit_mb`` even after the allocator gave back what it could, else None.

    The bound on whatever grows over months, whatever it is: the daemon then stops as it
    does for systemd and systemd starts it again (``Restart=always``). The gateway flushes
    its counters and its sessions stay in the kernel and the database, so nobody is logged
    out (a kill -9 keeps them too: docs/reliability.md); the sync agent keeps nothing in
    memory that its database does not hold. uWSGI's ``reload-on-rss`` and gunicorn's
    ``max_requests`` are the same idea."""

    def __init__(
        self,
        limit_mb: int,
        resident: Callable[[], float] = resident_mb,
        trim: Callable[[int], int] | None = None,
    ):
        self.limit_mb = limit_mb
        self.resident = resident
        self.trim = trim if trim is not None else malloc_trim()

    def exceeded(self) -> float | None:
        if not self.limit_mb:
            return None
        size = self.resident()
        if size <= self.limit_mb:
            return None
        if self.trim is not None:  # free pages glibc holds are not growth
            self.trim(0)
            size = self.resident()
        return size if size > self.limit_mb else None
