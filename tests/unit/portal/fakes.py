"""A gateway client for portal tests: the real session engine (tests.unit.fakes' kernel-less
data path underneath) behind the real dispatcher, spoken to as the portal speaks to the
control socket — every request and reply goes through its JSON line, and errors come back as
the HotspotError subclasses hotspot.control raises."""

from __future__ import annotations

import json
import threading
from typing import Any, TypeVar

from gateway.control_server import Dispatcher
from gateway.engine import SessionEngine
from hotspot.control import error_from
from hotspot.errors import ControlUnavailable
from hotspot.protocol import Request, encode, parse_request

R = TypeVar("R")


class LocalGateway:
    def __init__(self, engine: SessionEngine):
        self.engine = engine
        self.dispatcher = Dispatcher(engine, lambda: {"ok": True})
        self.down = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def send(self, request: Request[R]) -> R:
        wire = request.to_wire()
        with self._lock:
            self.calls.append((request.op, wire))
        if self.down:
            raise ControlUnavailable("gateway not reachable (test)")
        reply = json.loads(self.dispatcher.answer(encode(wire)))
        if reply["ok"]:
            return reply["result"]
        raise error_from(reply["error"])

    def call(self, op: str, **args: Any) -> Any:
        return self.send(
            parse_request({"op": op, **{k: v for k, v in args.items() if v is not None}})
        )

    def ops(self, name: str) -> list[dict[str, Any]]:
        return [args for op, args in self.calls if op == name]
