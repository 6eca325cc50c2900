"""The control socket: a Unix socket (mode 0660, group ``hotspot``) speaking the JSON-lines
protocol of :mod:`hotspot.control`. Each connection gets a thread; the engine's lock orders
the work."""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import threading
import time
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError

from hotspot import __version__
from hotspot.control import MAX_LINE, encode
from hotspot.errors import HotspotError, UsageError
from gateway.engine import SessionEngine

log = logging.getLogger(__name__)


class Dispatcher:
    """op name → engine call, with argument checking."""

    def __init__(self, engine: SessionEngine, status: Callable[[], dict[str, Any]]):
        self.engine = engine
        e = engine
        self.ops: dict[str, tuple[Callable[..., Any], set[str]]] = {
            "ping": (lambda: {"pong": True, "version": __version__}, set()),
            "status": (status, set()),
            "authorize": (e.authorize, {"ip", "mac", "tier", "source", "minutes", "expires_at",
                                         "bytes_limit", "voucher_id"}),
            "deauthorize": (e.deauthorize, {"ip", "mac", "reason"}),
            "client": (e.client, {"ip", "mac"}),
            "extend": (e.extend, {"ip", "mac", "minutes"}),
            "list": (e.list, set()),
            "block": (e.block, {"mac", "reason"}),
            "unblock": (e.unblock, {"mac"}),
            "blocked": (e.blocked, set()),
            "reconcile": (lambda: {"changed": e.reconcile()}, set()),
        }

    def handle(self, request: Any) -> dict[str, Any]:
        try:
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise UsageError("a request is a JSON object with an \"op\"")
            op = request["op"]
            if op not in self.ops:
                raise UsageError(f"unknown op {op!r}")
            fn, allowed = self.ops[op]
            args = {k: v for k, v in request.items() if k != "op"}
            unknown = set(args) - allowed
            if unknown:
                raise UsageError(f"{op}: unknown argument(s) {', '.join(sorted(unknown))}")
            try:
                return {"ok": True, "result": fn(**args)}
            except (TypeError, ValueError, AttributeError) as exc:
                # A missing or mistyped argument reaches the engine as a Python error.
                raise UsageError(f"{op}: bad or missing argument ({exc})") from exc
        except HotspotError as exc:
            return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        except SQLAlchemyError as exc:
            log.error("database error: %s", exc)
            return {"ok": False, "error": {"code": "database", "message": "database error"}}


class _Handler(socketserver.StreamRequestHandler):
    server: "ControlServer"

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return
            if not line:
                return
            if len(line) > MAX_LINE:
                self._send({"ok": False, "error": {"code": "bad-request",
                                                   "message": "request too large"}})
                return
            try:
                request = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                reply = {"ok": False, "error": {"code": "bad-request", "message": "not JSON"}}
            else:
                started = time.perf_counter()
                reply = self.server.dispatcher.handle(request)
                log.debug("%s in %.1f ms", request.get("op") if isinstance(request, dict) else "?",
                          (time.perf_counter() - started) * 1000)
            if not self._send(reply):
                return

    def _send(self, reply: dict[str, Any]) -> bool:
        try:
            self.wfile.write(encode(reply))
            self.wfile.flush()
            return True
        except OSError:
            return False


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, dispatcher: Dispatcher, group: str | None = "hotspot"):
        self.dispatcher = dispatcher
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            _remove_stale(path)
        old_umask = os.umask(0o117)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                log.warning("group %r does not exist: control socket stays root-only", group)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="control", daemon=True)
        thread.start()
        log.info("control socket listening at %s", self.path)
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a killed gateway; refuse if a live gateway answers."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise HotspotError(f"another gateway is already listening at {path}", code="already-running")
