"""The session engine's lock, which also notices an operation that changed the kernel and
then failed (issue #12).

Every operation of the engine (a login, a kick, a block…) changes the kernel last inside its
database transaction: when the commit that follows fails (a full disk, say), the kernel is
ahead of the database. A tick that reads the login sets every time put it back within one
tick; a tick that reads only its sessions' classes (``[gateway] full_look_seconds``) would
leave it for up to a minute — a device let in with no session row to charge, or a block
lifted that the database still holds. So a hold of this lock that ends in an exception after
the kernel moved (``generation()`` changed) asks for a whole look (``on_failed_change``): the
next tick reads everything and puts the kernel back to what the database holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType


class OperationLock:
    """A re-entrant lock; the outermost hold that raises after the kernel changed calls
    ``on_failed_change`` (under the lock, before the exception goes on)."""

    def __init__(self, generation: Callable[[], int], on_failed_change: Callable[[], None]):
        self._lock = threading.RLock()
        self._generation = generation
        self._on_failed_change = on_failed_change
        # (touched by the holder only)
        self._depth = 0
        self._entered_at = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1:
            self._entered_at = self._generation()
        return True

    def release(self) -> None:
        self._depth -= 1
        self._lock.release()

    def __enter__(self) -> OperationLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._depth == 1 and exc_type is not None and self._generation() != self._entered_at:
                self._on_failed_change()
        finally:
            self.release()
