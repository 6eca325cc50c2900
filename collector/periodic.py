"""A job run now and every ``interval`` seconds in a daemon thread of a collector worker
(started after the worker's fork, never in the gunicorn master: a thread that held a lock at
a fork leaves it held for good in the child)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicJob:
    def __init__(self, name: str, interval: float, work: Callable[[], object]):
        self.name, self.interval, self.work = name, interval, work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.work()
            except Exception:  # the job must survive a bad run (logged); the next one retries
                log.exception("%s failed; next try in %s s", self.name, self.interval)
            self._stop.wait(self.interval)
