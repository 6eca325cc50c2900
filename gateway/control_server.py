"""The control socket: a Unix socket (mode 0660, group ``hotspot``) speaking the JSON-lines
protocol of :mod:`hotspot.protocol`. Each connection gets a thread; the engine's lock orders
the work."""

from __future__ import annotations

import builtins
import datetime as dt
import grp
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from hotspot import __version__
from hotspot.db import is_storage_full
from hotspot.errors import ErrorCode, HotspotError, UsageError
from hotspot.model import EndReason, Source
from hotspot.protocol import (
    MAX_LINE,
    AuthorizeRequest,
    BlockedDevice,
    BlockedRequest,
    BlockRequest,
    BlockResult,
    ClientInfo,
    ClientRequest,
    DeauthorizeRequest,
    ExtendRequest,
    ListRequest,
    PingRequest,
    PolicyApplyRequest,
    PolicyRequest,
    RadiusAuthorizeRequest,
    ReconcileRequest,
    Reply,
    Request,
    SessionInfo,
    StatusRequest,
    TrustedDeviceInfo,
    TrustedRequest,
    TrustRequest,
    UnblockRequest,
    UnblockResult,
    UntrustRequest,
    UntrustResult,
    encode,
    error_reply,
    ok_reply,
    parse_request,
)

log = logging.getLogger(__name__)


class EnginePort(Protocol):
    """What the dispatcher needs from the session engine (:class:`gateway.engine.SessionEngine`).
    Arguments arrive checked: the engine checks only what needs its configuration or state."""

    def authorize(
        self,
        *,
        ip: str | None = None,
        mac: str | None = None,
        tier: str = ...,
        source: Source = ...,
        minutes: int | None = None,
        expires_at: dt.datetime | None = None,
        bytes_limit: int | None = None,
        voucher_id: int | None = None,
        expect_mac: str | None = None,
    ) -> SessionInfo: ...
    def deauthorize(
        self, *, ip: str | None = None, mac: str | None = None, reason: EndReason = ...
    ) -> SessionInfo: ...
    def client(
        self, *, ip: str | None = None, mac: str | None = None, brief: bool = False
    ) -> ClientInfo: ...
    def extend(
        self, *, mac: str | None = None, ip: str | None = None, minutes: int
    ) -> SessionInfo: ...
    def block(self, *, mac: str, reason: str = ...) -> BlockResult: ...
    def unblock(self, *, mac: str) -> UnblockResult: ...
    def blocked(self) -> builtins.list[BlockedDevice]: ...
    def trust(
        self, *, mac: str, label: str, tier: str, created_by: str | None = None
    ) -> TrustedDeviceInfo: ...
    def untrust(self, *, mac: str) -> UntrustResult: ...
    def trusted(self) -> builtins.list[TrustedDeviceInfo]: ...
    def reconcile(self) -> str: ...
    def list(self) -> builtins.list[SessionInfo]: ...


class MetricsPort(Protocol):
    """What the dispatcher tells :class:`gateway.metrics.GatewayMetrics`."""

    def request(
        self,
        op: object,
        seconds: float,
        code: str | None,
        source: str | None = None,
        voucher: bool = False,
    ) -> None: ...


class RadiusPort(Protocol):
    """What the dispatcher needs from :class:`gateway.radius.RadiusService`."""

    def authorize(self, req: RadiusAuthorizeRequest) -> SessionInfo: ...


class PolicyPort(Protocol):
    """What the dispatcher needs from :class:`gateway.policy.PolicyKeeper`."""

    def offer(self, envelope: Mapping[str, Any]) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...


class Dispatcher:
    """A request line → a reply line. Requests are parsed once, here (:func:`parse_request`);
    every failure becomes an error reply, so a connection outlives any request on it."""

    def __init__(
        self,
        engine: EnginePort,
        status: Callable[[], Mapping[str, Any]],
        radius: RadiusPort | None = None,
        metrics: MetricsPort | None = None,
        policy: PolicyPort | None = None,
    ):
        self.engine = engine
        self.status = status
        self.radius = radius
        self.metrics = metrics
        self.policy = policy

    def answer(self, line: bytes) -> bytes:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as exc:
            # ValueError: not JSON, not UTF-8, or an integer longer than Python will convert;
            # RecursionError: nesting deeper than the decoder's stack.
            reply: Reply = error_reply(ErrorCode.BAD_REQUEST, f"not JSON ({type(exc).__name__})")
        else:
            reply = self.handle(message)
        try:
            return encode(reply)
        except (TypeError, ValueError):  # a result that is not JSON: a bug in the engine
            log.exception("control: cannot encode the reply")
            return encode(error_reply(ErrorCode.INTERNAL, "internal error in the gateway (logged)"))

    def handle(self, message: object) -> Reply:
        started = time.perf_counter()
        reply = self._handle(message, started)
        if self.metrics is not None:
            self._count(message, reply, time.perf_counter() - started)
        return reply

    def _count(self, message: object, reply: Reply, seconds: float) -> None:
        assert self.metrics is not None
        op = message.get("op") if isinstance(message, dict) else None
        if reply.get("ok"):
            result = reply.get("result")
            source = result.get("source") if isinstance(result, dict) else None
            voucher = isinstance(result, dict) and result.get("voucher_id") is not None
            self.metrics.request(op, seconds, None, source, voucher)
        else:
            error = reply.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            self.metrics.request(op, seconds, str(code))

    def _handle(self, message: object, started: float) -> Reply:
        op = message.get("op") if isinstance(message, dict) else None
        try:
            result = self.run(parse_request(message))
        except HotspotError as exc:
            return error_reply(exc.code, exc.message)
        except SQLAlchemyError as exc:
            if is_storage_full(exc):
                # Not a broken database: the request can be made again once there is room.
                log.warning("control %s: storage full: %s", op, str(exc).splitlines()[0])
                return error_reply(ErrorCode.STORAGE_FULL, "the gateway's storage is full")
            log.error("control %s: database error: %s", op, exc)
            return error_reply(ErrorCode.DATABASE, "database error")
        except Exception:
            # Anything else is a bug, not a bad request: log it whole and answer so that the
            # connection (and the portal worker on it) carries on.
            log.exception("control %s: internal error", op)
            return error_reply(ErrorCode.INTERNAL, "internal error in the gateway (logged)")
        log.debug("%s in %.1f ms", op, (time.perf_counter() - started) * 1000)
        return ok_reply(result)

    def run(self, request: Request[Any]) -> object:
        """Carry out a parsed request; its result is the reply's ``result``."""
        e = self.engine
        match request:
            case PingRequest():
                return {"pong": True, "version": __version__}
            case StatusRequest():
                return self.status()
            case AuthorizeRequest():
                return e.authorize(
                    ip=request.ip,
                    mac=request.mac,
                    tier=request.tier,
                    source=request.source,
                    minutes=request.minutes,
                    expires_at=request.expires_at,
                    bytes_limit=request.bytes_limit,
                    voucher_id=request.voucher_id,
                    expect_mac=request.expect_mac,
                )
            case RadiusAuthorizeRequest():
                if self.radius is None:
                    raise UsageError("op: RADIUS is not enabled on this gateway ([radius])")
                return self.radius.authorize(request)
            case DeauthorizeRequest():
                return e.deauthorize(ip=request.ip, mac=request.mac, reason=request.reason)
            case ClientRequest():
                return e.client(ip=request.ip, mac=request.mac, brief=bool(request.brief))
            case ExtendRequest():
                return e.extend(ip=request.ip, mac=request.mac, minutes=request.minutes)
            case ListRequest():
                return e.list()
            case BlockRequest():
                return e.block(mac=request.mac, reason=request.reason)
            case UnblockRequest():
                return e.unblock(mac=request.mac)
            case BlockedRequest():
                return e.blocked()
            case TrustRequest():
                return e.trust(
                    mac=request.mac,
                    label=request.label,
                    tier=request.tier,
                    created_by=request.created_by,
                )
            case UntrustRequest():
                return e.untrust(mac=request.mac)
            case TrustedRequest():
                return e.trusted()
            case ReconcileRequest():
                return {"changed": e.reconcile()}
            case PolicyRequest() | PolicyApplyRequest() if self.policy is None:
                raise UsageError("op: this gateway takes no policy")
            case PolicyRequest():
                assert self.policy is not None
                return self.policy.status()
            case PolicyApplyRequest():
                assert self.policy is not None
                return self.policy.offer(
                    {
                        "document": request.document,
                        "signature": request.signature,
                        "key_id": request.key_id or "",
                    }
                )
        raise NotImplementedError(f"no handler for {type(request).__name__}")


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return
            if not line:
                return
            if len(line) > MAX_LINE:
                # The rest of an overlong line cannot be told from the next request: hang up.
                self._send(encode(error_reply(ErrorCode.BAD_REQUEST, "request too large")))
                return
            if not self._send(self.server.dispatcher.answer(line)):
                return

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    # Every portal thread (up to 16 workers × 32 threads) may connect at once after a
    # restart or in a burst of logins, while the accepting thread waits for the GIL; with
    # socketserver's backlog of 5 the sixth got EAGAIN and its villager a "busy" page.
    request_queue_size = 512

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
    raise HotspotError(
        f"another gateway is already listening at {path}", code=ErrorCode.ALREADY_RUNNING
    )
