"""The portal's line to the gateway: the control socket, one connection per thread.

The portal never touches the kernel; everything it does to the network is a request here.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol, TypeVar

from hotspot.control import ControlClient
from hotspot.protocol import Request

TIMEOUT = 5.0  # seconds: a villager gets "try again" rather than a spinning page

R = TypeVar("R")


class GatewayPort(Protocol):
    """What the portal asks of the gateway: :class:`GatewayLink`, or a test's stand-in."""

    def send(self, request: Request[R]) -> R: ...
    def call(self, op: str, **args: Any) -> Any: ...


class GatewayLink:
    """Thread- and fork-safe: each thread of each worker has its own connection."""

    def __init__(self, path: str, timeout: float = TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._local = threading.local()

    def _client(self) -> ControlClient:
        c = getattr(self._local, "client", None)
        if c is None or self._local.pid != os.getpid():
            c = ControlClient(self.path, timeout=self.timeout)
            self._local.client, self._local.pid = c, os.getpid()
        return c

    def send(self, request: Request[R]) -> R:
        return self._client().send(request)

    def call(self, op: str, **args: Any) -> Any:
        """The untyped form (``hotspot.vouchers`` and the console still name ops)."""
        return self._client().call(op, **args)
