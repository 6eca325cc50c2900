"""A gunicorn ``gthread`` worker that closes slow clients: the portal's and the collector's.

gunicorn's threaded worker hands a connection to a thread as soon as its first byte arrives
and then reads the request with a blocking socket and no deadline. A client that trickles
one header line every few seconds (slowloris) holds that thread for as long as it likes; a
few dozen such sockets from one walled phone hold every thread of every worker and the portal
stops answering the whole village.

:class:`DeadlineThreadWorker` gives every request a read deadline: the request line and
headers must be complete within ``read_timeout`` seconds of their first byte, and once the
headers are in, no read of the body may wait longer than ``read_timeout`` for data. A client
that misses it is disconnected (no answer: it is not a browser). The clock starts when the
request's bytes arrive, not when a thread takes it up; past the deadline what is already in
the socket buffer is still read, so a villager's request queued behind slow ones is served. Everything else is
gunicorn's own worker. The per-source connection cap in nftables (``portal_conn_limit``,
below ``[portal] threads``) bounds how many sockets one phone can hold while their deadlines
run, so one phone never holds every thread of a worker.

An application's ``Connection: close`` is honoured: gunicorn drops hop-by-hop headers an
application sets and would keep the connection open. The portal closes every connection it
answers with a captive redirect (``portal/intercept.py``): a browser must not keep a
connection the gateway's NAT sent to the portal for the page it asks for after login.

gunicorn takes a class as ``worker_class``: :func:`worker_class_for` makes one with the
seconds (``portal/server.py``, ``collector/server.py``).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 10.0


class RequestReadTimeout(NoMoreData):  # type: ignore[misc,unused-ignore]  # gunicorn is untyped
    """The client did not send its request in time (gunicorn closes the connection quietly)."""


class DeadlineUnreader(SocketUnreader):  # type: ignore[misc,unused-ignore]
    """The socket reader of one connection, with the deadline of the request being read."""

    def __init__(self, sock: Any, read_timeout: float, max_chunk: int = 8192):
        super().__init__(sock, max_chunk)
        self.read_timeout = read_timeout
        self.headers_done = False
        self.deadline: float | None = None

    def next_request(self, arrived: float | None = None) -> None:
        """A new request starts: its headers must be in ``read_timeout`` seconds after
        ``arrived`` (when its first bytes reached the server; default: now)."""
        self.headers_done = False
        self.deadline = (time.monotonic() if arrived is None else arrived) + self.read_timeout

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.headers_done:
            wait = self.read_timeout  # the body: no single read may stall longer
        else:
            if self.deadline is None:
                self.next_request()
            assert self.deadline is not None
            # Past the deadline, what has already arrived is still read (a request that
            # waited in the queue behind slow ones is complete in the socket buffer); only
            # waiting for more is refused.
            wait = max(0.0, self.deadline - time.monotonic())
        self.sock.settimeout(wait)
        try:
            data: bytes = super().chunk(size_hint)
            return data
        except (TimeoutError, BlockingIOError):
            raise RequestReadTimeout() from None
        finally:
            try:
                self.sock.settimeout(None)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise


class DeadlineConn(TConn):  # type: ignore[misc,unused-ignore]
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.arrived: float | None = time.monotonic()

    def init(self) -> None:
        fresh = not self.initialized
        super().init()
        if not fresh or self.is_http2 or self.parser is None:
            return
        old = self.parser.unreader
        if isinstance(old, SocketUnreader) and not isinstance(old, DeadlineUnreader):
            reader = DeadlineUnreader(old.sock, self.read_timeout, old.mxchunk)
            reader.buf = old.buf  # bytes already read stay (HTTP/2 preface checks)
            reader.next_request(self.arrived)
            self.arrived = None
            self.parser.unreader = reader

    def next_request(self) -> None:
        """Called as a thread takes the connection up: the request's clock started when
        its bytes arrived (accepted, or readable again), not when a thread got free."""
        reader = getattr(self.parser, "unreader", None)
        if isinstance(reader, DeadlineUnreader):  # else the first request: init() sets it
            reader.next_request(self.arrived)
            self.arrived = None  # a pipelined request after this one starts its own clock

    def headers_read(self) -> None:
        reader = getattr(self.parser, "unreader", None)
        if isinstance(reader, DeadlineUnreader):
            reader.headers_done = True


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc,unused-ignore]
    """gunicorn's ``gthread`` worker with a read deadline per request (see the module)."""

    read_timeout: float = DEFAULT_READ_TIMEOUT

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: WsgiApp = honour_connection_close(self.wsgi)

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client_sock.setblocking(True)
        conn = DeadlineConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.read_timeout = self.read_timeout
        self.enqueue_req(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if isinstance(conn, DeadlineConn):
            conn.arrived = time.monotonic()
        super().on_client_socket_readable(conn, client)

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        if isinstance(conn, DeadlineConn):
            conn.arrived = time.monotonic()
        super().on_pending_socket_readable(conn, client)

    def handle(self, conn: Any) -> Any:
        if isinstance(conn, DeadlineConn):
            conn.next_request()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if isinstance(conn, DeadlineConn):
            conn.headers_read()
        return super().handle_request(req, conn)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def honour_connection_close(app: WsgiApp) -> WsgiApp:
    """``app``, but a response that says ``Connection: close`` closes its connection.

    gunicorn removes hop-by-hop headers from what an application sends and decides on
    keep-alive itself; its ``start_response`` is a method of the response, which can be told
    to close (it then sends ``Connection: close`` itself)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(
                name.lower() == "connection" and value.strip().lower() == "close"
                for name, value in headers
            ):
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


def worker_class_for(read_timeout: float) -> type[DeadlineThreadWorker]:
    """The worker class with ``read_timeout`` seconds (gunicorn takes a class for
    ``worker_class``; a subclass per value keeps the setting out of global state)."""
    return type(
        "DeadlineThreadWorker",
        (DeadlineThreadWorker,),
        {"read_timeout": float(read_timeout), "__module__": __name__},
    )
