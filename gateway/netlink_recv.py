"""Reading what the kernel has already queued on a netlink socket without letting go of the
interpreter (issue #12, item 4).

Python's ``socket.recv`` releases the interpreter lock for every call. A thread that gets it
back while another thread runs Python waits for that thread's switch interval (5 ms) to
end: a dump of 16,381 HTB classes is some 150 ``recv`` calls of 32 KB (the kernel fills one
buffer per call), so beside one busy thread the tick's class read took 556 ms where it took
43 ms alone (bench/README.md, "The tick at 10,000 sessions"). The same wait comes with each
of a login's netlink round trips.

The kernel answers a netlink request while it is being sent (rtnetlink and nf_tables run in
the sender's ``sendmsg``) and queues a dump's next buffer as the previous one is read, so the
data is nearly always there already. :func:`recv_queued` reads it with a non-blocking
``recv`` called through :class:`ctypes.PyDLL`, which keeps the interpreter lock: no wait to
get it back. Only when nothing is queued yet (the kernel still working) does it fall back
to the socket's own blocking ``recv``, which lets go as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Any

MSG_DONTWAIT = 0x40


def _holding_recv() -> Any:
    """The C library's ``recv`` called with the interpreter lock kept (None without it)."""
    try:
        fn = ctypes.PyDLL(None, use_errno=True).recv  # PyDLL: calls keep the lock
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_ssize_t
    return fn


_recv = _holding_recv()

_NOT_YET = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})


def recv_queued(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)``, without releasing the interpreter lock when the kernel has the
    data queued already; a blocking ``sock.recv`` (its timeout as set) when it has not."""
    if _recv is not None and isinstance(sock, socket.socket):  # (not a test's stand-in)
        buffer = ctypes.create_string_buffer(size)
        got = int(_recv(sock.fileno(), buffer, size, MSG_DONTWAIT))
        if got >= 0:
            return ctypes.string_at(buffer, got)
        code = ctypes.get_errno()
        if code not in _NOT_YET:
            raise OSError(code, os.strerror(code))
    return sock.recv(size)
