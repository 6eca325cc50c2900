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

pyroute2 0.9 also keeps every message that arrives for a request it no longer waits for in
its socket's root queue, which nothing reads: one for every successful ``neigh("get")``
(the portal's neighbour lookup of each login and status page). The soak saw the gateway's
heap grow by them (docs/reliability.md, "A week in minutes"). :class:`OnOneThread` drops
them after every call; the object is used from its thread only, so no one else waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def drop_strays(obj: object) -> int:
    """Empty pyroute2's root queue of the calling thread's socket of ``obj`` (the module's
    docstring); the number of messages dropped. An object without one (another pyroute2
    version, a stand-in) has none."""
    core = getattr(obj, "asyncore", None)
    queues = getattr(getattr(getattr(core, "local", None), "msg_queue", None), "root", None)
    if queues is None or not hasattr(queues, "get_nowait"):
        return 0
    dropped = 0
    while not queues.empty():
        queues.get_nowait()
        queues.task_done()
        dropped += 1
    return dropped


class OnOneThread(Generic[T]):
    """``factory()``'s object, every method of it called on one dedicated thread (callers
    wait for the answer). An answer that is an iterator is read to a list on that thread:
    pyroute2's dumps are generators that talk to the kernel as they are consumed."""

    def __init__(self, factory: Callable[[], T], name: str = "netlink"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._thread = self._pool.submit(threading.current_thread).result()
        self._obj: T = self._pool.submit(factory).result()

    def _run(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            answer = method(*args, **kwargs)
            if isinstance(answer, Iterator):
                return list(answer)
            return answer
        finally:
            drop_strays(self._obj)

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
