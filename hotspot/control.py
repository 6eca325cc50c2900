"""The control socket's client, used by the portal, the CLI and the benchmarks.

The protocol itself (requests, replies, limits) is :mod:`hotspot.protocol`. Only the gateway
executes requests; this module has no kernel imports.

    with ControlClient(path) as ctl:
        info = ctl.send(ClientRequest(ip="10.10.0.42"))   # typed: ClientInfo

An error reply is raised as its code's exception family (:class:`~hotspot.errors.ErrorCode`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, BinaryIO, TypeVar, cast

from hotspot.errors import ConfigError, ControlUnavailable, ErrorCode, HotspotError
from hotspot.protocol import MAX_REPLY, Request, encode, parse_request

log = logging.getLogger(__name__)


class ControlTimeout(ControlUnavailable):
    """The gateway took the request but did not answer in time: it may still carry it out
    (a caller that undoes its own part on an error must not, then: hotspot/vouchers)."""


R = TypeVar("R")


def error_from(body: Mapping[str, Any]) -> HotspotError:
    """The exception for an error reply's ``error`` object."""
    raw = str(body.get("code", ErrorCode.ERROR.value))
    try:
        code = ErrorCode(raw)
    except ValueError:  # a newer gateway's code: keep it in the message
        log.warning("gateway answered with unknown error code %r", raw)
        return HotspotError(f"{raw}: {body.get('message', '')}", code=ErrorCode.ERROR)
    message = str(body.get("message") or code.meaning)
    family = code.family
    if family is ConfigError:  # it is built from a key; a reply carries only the message
        family = HotspotError
    return family(message, code=code)


def _connect_waiting(sock: socket.socket, path: str, timeout: float) -> None:
    """Connect, waiting while the gateway's listen queue is full: a Unix socket answers
    EAGAIN then instead of blocking (a burst of logins, the gateway busy); after
    ``timeout`` the last error is raised."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


class ControlClient:
    """A persistent connection to the gateway; reconnects once if the gateway restarted."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            _connect_waiting(sock, self.path, self.timeout)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            sock.close()
            raise ControlUnavailable(
                f"gateway not reachable at {self.path}: {exc.strerror}"
            ) from None
        self._sock, self._file = sock, sock.makefile("rb")
        return self._sock, self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def _roundtrip(self, data: bytes) -> bytes:
        if self._sock is None or self._file is None:
            sock, file = self._connect()
        else:
            sock, file = self._sock, self._file
        sock.sendall(data)
        line = file.readline(MAX_REPLY + 1)
        if not line:
            raise ConnectionResetError("gateway closed the connection")
        if not line.endswith(b"\n"):
            raise ConnectionResetError("reply cut short")
        return line

    def _exchange(self, data: bytes) -> bytes:
        with self._lock:
            try:
                return self._roundtrip(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close()
                try:
                    return self._roundtrip(data)
                except OSError as exc:
                    self.close()
                    raise ControlUnavailable(
                        f"gateway not reachable at {self.path}: {exc}"
                    ) from None
            except TimeoutError:
                self.close()
                raise ControlTimeout(f"gateway at {self.path} did not answer in time") from None
            except OSError as exc:
                self.close()
                raise ControlUnavailable(f"gateway not reachable at {self.path}: {exc}") from None

    def send(self, request: Request[R]) -> R:
        """One request, its typed result; an error reply is raised."""
        line = self._exchange(encode(request.to_wire()))
        try:
            reply = json.loads(line)
        except ValueError:  # not JSON, not UTF-8
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self.close()  # what is left on this connection cannot be trusted
            raise ControlUnavailable("gateway sent a malformed reply")
        if reply["ok"]:
            return cast(R, reply.get("result"))  # the gateway is ours: its results are trusted
        error = reply.get("error")
        raise error_from(error if isinstance(error, dict) else {})

    def call(self, op: str, **args: Any) -> Any:
        """The untyped form, for callers that still name the op: the arguments are checked
        here as the gateway would (a bad one raises ``bad-request`` without a round trip)."""
        return self.send(
            parse_request({"op": op, **{k: v for k, v in args.items() if v is not None}})
        )

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
