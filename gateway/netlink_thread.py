"""pyroute2 objects used from one thread only.

pyroute2 0.9 gives every thread that calls an ``IPRoute`` or ``Conntrack`` its own netlink
socket and event loop, and keeps them in the object until it is closed: a thread that ends
leaves them open. The control server runs every connection in a thread of its own (the
portal's, ``hotspot clients …``, the sync agent's), and a connection that looks up a
neighbour or forgets a client's conntrack entries made one; the soak (``bench.soak``) saw
the gateway's descriptors grow by two per connection, about 4,000 an hour of village churn,
until the process would hit its limit after a few days. :class:`OnOneThread` runs every
call on one thread of its own, so the object holds one socket per protocol for the daemon's
life.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class OnOneThread(Generic[T]):
    """``factory()``'s object, every method of it called on one dedicated thread (callers
    wait for the answer). An answer that is an iterator is read to a list on that thread:
    pyroute2's dumps are generators that talk to the kernel as they are consumed."""

    def __init__(self, factory: Callable[[], T], name: str = "netlink"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._thread = self._pool.submit(threading.current_thread).result()
        self._obj: T = self._pool.submit(factory).result()

    def _run(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        answer = method(*args, **kwargs)
        if isinstance(answer, Iterator):
            return list(answer)
        return answer

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self._thread:
                return self._run(attr, *args, **kwargs)
            return self._pool.submit(self._run, attr, *args, **kwargs).result()

        return call

    def close(self) -> None:
        close = getattr(self._obj, "close", None)
        try:
            if close is not None:
                self._pool.submit(close).result()
        finally:
            self._pool.shutdown(wait=True)
