"""pyroute2 objects on one thread (gateway/netlink_thread.py): the control server's thread per
connection must not leave a netlink socket behind each (found by ``bench.soak``)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import types

import pytest
from pyroute2 import IPRoute

from gateway.netlink_thread import OnOneThread, drop_strays


class Recorder:
    """A stand-in for a pyroute2 object: which thread each call ran on."""

    def __init__(self) -> None:
        self.threads: list[int] = [threading.get_ident()]
        self.closed = False

    def call(self, x: int) -> int:
        self.threads.append(threading.get_ident())
        return x * 2

    def dump(self, n: int):
        for i in range(n):
            self.threads.append(threading.get_ident())
            yield i

    def fail(self) -> None:
        raise ValueError("kernel said no")

    def close(self) -> None:
        self.threads.append(threading.get_ident())
        self.closed = True


def run_in_threads(fn, n: int = 20) -> None:
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_every_call_from_any_thread_runs_on_one_thread():
    wrapped = OnOneThread(Recorder)
    results: list[object] = []
    run_in_threads(lambda: results.append((wrapped.call(21), wrapped.dump(3))))
    assert results == [(42, [0, 1, 2])] * 20  # a generator comes back as a list
    wrapped.close()
    obj = wrapped._obj
    assert obj.closed
    assert len(set(obj.threads)) == 1 and obj.threads[0] != threading.get_ident()


def test_errors_reach_the_caller():
    wrapped = OnOneThread(Recorder)
    with pytest.raises(ValueError, match="kernel said no"):
        wrapped.fail()
    assert wrapped.call(1) == 2  # the thread lives on
    wrapped.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_real_iproute_used_from_many_threads_keeps_one_socket():
    """pyroute2 0.9 alone opens a socket for every thread that calls it (shown first, so
    the test fails if the library changes and the wrapper is no longer needed to prove)."""
    bare = IPRoute()
    gc.disable()  # its per-thread sockets close when collected: counted before that
    try:
        before = open_fds()
        run_in_threads(lambda: bare.get_links(1), 10)
        leaked = open_fds() - before
    finally:
        gc.enable()
    bare.close()

    wrapped = OnOneThread(IPRoute)
    wrapped.get_links(1)
    gc.collect()  # the bare one's per-thread sockets close when collected: not during the count
    before = open_fds()
    run_in_threads(lambda: wrapped.get_links(1), 10)
    assert open_fds() <= before  # (another test's leftovers may close meanwhile, never open)
    assert leaked >= 10, f"pyroute2 no longer leaks per thread ({leaked}): see netlink_thread"
    wrapped.close()


class StrayQueue:
    """pyroute2 0.9's shape: ``asyncore.local.msg_queue.root``, an asyncio queue where the
    messages of requests no one waits for any more end up (one per ``neigh("get")``)."""

    def __init__(self) -> None:
        root = asyncio.Queue()
        self.asyncore = types.SimpleNamespace(
            local=types.SimpleNamespace(msg_queue=types.SimpleNamespace(root=root))
        )
        self.root = root

    def get(self) -> str:
        self.root.put_nowait(b"late ack")  # the answer's trailing message, never read
        return "answer"


def test_the_messages_no_one_waits_for_are_dropped_after_every_call():
    """The soak's slow heap growth: pyroute2 kept every late message in a queue nothing
    reads, one per neighbour lookup (a few hundred thousand a week in a busy village)."""
    ost = OnOneThread(StrayQueue)
    try:
        for _ in range(100):
            assert ost.get() == "answer"
        assert ost._pool.submit(ost._obj.root.qsize).result() == 0
    finally:
        ost.close()
    assert drop_strays(object()) == 0  # another pyroute2, a stand-in: nothing to drop
