"""A gateway client for portal tests: the real session engine (tests.unit.fakes' kernel-less
data path underneath), spoken to as the portal speaks to the control socket — every request
and answer goes through JSON, and errors come back as the HotspotError subclasses
hotspot.control raises."""

from __future__ import annotations

import json
import threading
from typing import Any

from gateway.control_server import Dispatcher
from gateway.engine import SessionEngine
from hotspot.control import error_from
from hotspot.errors import ControlUnavailable


class LocalGateway:
    def __init__(self, engine: SessionEngine):
        self.engine = engine
        self.dispatcher = Dispatcher(engine, lambda: {"ok": True})
        self.down = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        request = {"op": op, **{k: v for k, v in args.items() if v is not None}}
        with self._lock:
            self.calls.append((op, dict(request)))
        if self.down:
            raise ControlUnavailable("gateway not reachable (test)")
        reply = json.loads(json.dumps(self.dispatcher.handle(json.loads(json.dumps(request)))))
        if reply.get("ok"):
            return reply.get("result")
        raise error_from(reply.get("error") or {})

    def ops(self, name: str) -> list[dict[str, Any]]:
        return [args for op, args in self.calls if op == name]
