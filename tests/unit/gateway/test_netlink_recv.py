"""Reading what a socket has queued without letting go of the interpreter
(gateway/netlink_recv.py): queued data comes back as ``recv`` gives it, a message at a time
for datagrams; with nothing queued it waits as the socket's own ``recv`` does (its timeout
included); a broken socket is an OSError, as with ``recv``. (What it saves — the wait to get
the interpreter back beside a busy thread — is measured in ``bench.tick_read``.)"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gateway import netlink_recv
from gateway.netlink_recv import recv_queued


def test_queued_datagrams_come_back_one_at_a_time():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(b"first")
        a.send(b"x" * 40_000)
        assert recv_queued(b, 1 << 16) == b"first"
        assert recv_queued(b, 1 << 16) == b"x" * 40_000
        a.send(b"truncated to the size asked")
        assert recv_queued(b, 9) == b"truncated"


def test_with_nothing_queued_it_waits_as_recv_does():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        threading.Timer(0.2, lambda: a.send(b"later")).start()
        started = time.monotonic()
        assert recv_queued(b, 64) == b"later"
        assert time.monotonic() - started >= 0.15
        b.settimeout(0.1)
        with pytest.raises(TimeoutError):
            recv_queued(b, 64)


def test_a_closed_socket_is_an_oserror():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.close()
    b.close()
    with pytest.raises(OSError):
        recv_queued(b, 64)


def test_without_the_c_librarys_recv_it_is_the_sockets(monkeypatch):
    monkeypatch.setattr(netlink_recv, "_recv", None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(b"plain")
        assert recv_queued(b, 64) == b"plain"
