"""Forward ports on the host's loopback into the demo's network namespaces.

A listener on ``127.0.0.1:<port>`` in the host; for every connection a thread enters the
target namespace with ``setns(2)`` (which moves only the calling *thread* on Linux), opens
the outgoing socket there — a socket stays in the namespace it was made in — and then
relays bytes both ways. Python 3.11 has no ``os.setns``: it is called through libc.

:class:`HttpForward` also rewrites one request and one response per connection, for the
captive portal: the portal answers only requests whose ``Host`` is its own address (any
other host is a phone's intercepted request and gets a captive redirect), and its redirects
name that address. So the request's ``Host`` becomes ``10.10.0.1:8080``, a ``Location`` on
it becomes ``http://127.0.0.1:<port>``, and ``Connection: close`` makes the browser open a
fresh connection (and so a fresh rewrite) for its next request.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = None


def enter_netns(name: str) -> None:
    """Move the calling thread into the named network namespace (``ip netns`` name)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def connect_in(ns: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection made from inside ``ns``. Call it from a thread of its own: the
    thread stays in ``ns`` afterwards."""
    enter_netns(ns)
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    return sock


def pick_port(preferred: int) -> socket.socket:
    """A listening socket on 127.0.0.1: the preferred port if it is free, else any."""
    for port in (preferred, 0):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.listen(64)
        return s
    raise OSError("no free port on 127.0.0.1")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _read_head(sock: socket.socket, limit: int = 65536) -> tuple[bytes, bytes]:
    """(the HTTP head up to and including the blank line, what came after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(8192)
        if not data:
            break
        buf += data
        if len(buf) > limit:
            break
    head, sep, rest = buf.partition(b"\r\n\r\n")
    return (head + sep, rest) if sep else (buf, b"")


def _set_header(head: bytes, name: str, value: str | None) -> bytes:
    """Replace (or drop, with ``None``) every header ``name``; append it if missing."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    key = name.lower().encode() + b":"
    kept = [ln for ln in lines[1:] if not ln.lower().startswith(key)]
    if value is not None:
        kept.append(f"{name}: {value}".encode("latin-1"))
    return b"\r\n".join([lines[0], *kept]) + b"\r\n\r\n"


def _get_header(head: bytes, name: str) -> str | None:
    key = name.lower().encode() + b":"
    for ln in head.split(b"\r\n")[1:]:
        if ln.lower().startswith(key):
            return ln[len(key) :].strip().decode("latin-1")
    return None


@dataclass
class Forward:
    """127.0.0.1:<port> in the host → ``host:port`` as seen from namespace ``ns``."""

    name: str
    ns: str
    host: str
    port: int
    preferred: int = 0

    def __post_init__(self) -> None:
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self.local_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def start(self) -> Forward:
        self._server = pick_port(self.preferred)
        self.local_port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name=f"fwd-{self.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None

    def _accept(self) -> None:
        assert self._server is not None
        server = self._server
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client,), daemon=True, name=f"fwd-{self.name}-conn"
            ).start()

    def _serve(self, client: socket.socket) -> None:
        # This thread enters the namespace for good; it ends with the connection.
        try:
            upstream = connect_in(self.ns, self.host, self.port)
        except OSError as exc:
            log.debug(
                "%s: cannot reach %s:%d in %s: %s", self.name, self.host, self.port, self.ns, exc
            )
            self._unreachable(client)
            return
        try:
            self.relay(client, upstream)
        finally:
            for s in (client, upstream):
                try:
                    s.close()
                except OSError:
                    pass

    def _unreachable(self, client: socket.socket) -> None:
        body = (
            f"The demo's {self.name} at {self.host}:{self.port} ({self.ns}) does not "
            "answer (is the demo still starting, or over?)\n"
        ).encode()
        try:
            client.sendall(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                b"Connection: close\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        except OSError:
            pass
        client.close()

    def relay(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()


class HttpForward(Forward):
    """A :class:`Forward` that shows the namespace side the Host it expects and turns its
    absolute redirects back into host URLs (one request per connection)."""

    def relay(self, client: socket.socket, upstream: socket.socket) -> None:
        inside = f"{self.host}:{self.port}"
        head, rest = _read_head(client)
        if not head.endswith(b"\r\n\r\n"):
            return
        head = _set_header(head, "Host", inside)
        head = _set_header(head, "Connection", "close")
        head = _set_header(head, "Keep-Alive", None)
        upstream.sendall(head + rest)
        body_up = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
        body_up.start()
        rhead, rrest = _read_head(upstream)
        if rhead.endswith(b"\r\n\r\n"):
            location = _get_header(rhead, "Location")
            for origin in (f"http://{inside}", f"http://{self.host}"):
                if location and (
                    location == origin
                    or location.startswith(origin + "/")
                    or location.startswith(origin + "?")
                ):
                    rhead = _set_header(rhead, "Location", self.url + location[len(origin) :])
                    break
            rhead = _set_header(rhead, "Connection", "close")
        try:
            client.sendall(rhead + rrest)
        except OSError:
            return
        _pump(upstream, client)
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        body_up.join(timeout=1)
