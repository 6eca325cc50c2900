"""The control socket's protocol, and the client the portal and the CLI use.

One JSON object per line each way over a Unix stream socket:

    → {"op": "authorize", "ip": "10.10.0.42", "tier": "free"}
    ← {"ok": true, "result": {...}}
    ← {"ok": false, "error": {"code": "quota-exhausted", "message": "..."}}

A connection may carry many requests. Only the gateway executes them; this module has no
kernel imports.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from hotspot.errors import (ConfigError, ControlUnavailable, HotspotError, KernelError, NotFound,
                            Refused, UsageError)

MAX_LINE = 64 * 1024  # a request
MAX_REPLY = 64 * 1024 * 1024  # a reply (a list of thousands of sessions is a few hundred KB)
OPS = ("ping", "status", "authorize", "deauthorize", "client", "extend", "list", "block",
       "unblock", "blocked", "reconcile")

_BY_CODE: dict[str, type[HotspotError]] = {
    "bad-request": UsageError, "bad-config": HotspotError, "not-found": NotFound,
    "no-session": NotFound, "unknown-device": NotFound, "not-blocked": NotFound,
    "refused": Refused, "blocked": Refused, "quota-exhausted": Refused, "conflict": Refused,
    "expired": Refused,
    "kernel": KernelError, "nftables": KernelError, "tc": KernelError, "conntrack": KernelError,
}


def error_from(payload: dict[str, Any]) -> HotspotError:
    code = str(payload.get("code", "error"))
    message = str(payload.get("message", code))
    cls = _BY_CODE.get(code, HotspotError)
    if cls is ConfigError:  # pragma: no cover - never sent over the socket
        cls = HotspotError
    return cls(message, code=code)


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class ControlClient:
    """A persistent connection to the gateway; reconnects once if the gateway restarted."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            sock.close()
            raise ControlUnavailable(f"gateway not reachable at {self.path}: {exc.strerror}") from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
        self._sock = self._file = None

    def _roundtrip(self, data: bytes) -> bytes:
        if self._sock is None:
            self._connect()
        self._sock.sendall(data)
        line = self._file.readline(MAX_REPLY + 1)
        if not line:
            raise ConnectionResetError("gateway closed the connection")
        if not line.endswith(b"\n"):
            raise ConnectionResetError("reply cut short")
        return line

    def call(self, op: str, **args: Any) -> Any:
        data = encode({"op": op, **{k: v for k, v in args.items() if v is not None}})
        with self._lock:
            try:
                line = self._roundtrip(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close()
                try:
                    line = self._roundtrip(data)
                except OSError as exc:
                    self.close()
                    raise ControlUnavailable(f"gateway not reachable at {self.path}: {exc}") from None
            except socket.timeout:
                self.close()
                raise ControlUnavailable(f"gateway at {self.path} did not answer in time") from None
            except OSError as exc:
                self.close()
                raise ControlUnavailable(f"gateway not reachable at {self.path}: {exc}") from None
        try:
            reply = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.close()  # what is left on this connection cannot be trusted
            raise ControlUnavailable("gateway sent a malformed reply") from None
        if reply.get("ok"):
            return reply.get("result")
        raise error_from(reply.get("error") or {})

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
