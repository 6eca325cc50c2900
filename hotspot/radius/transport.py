"""One RADIUS request and its reply over UDP, with a deadline: the servers in order, each
``attempts`` times, ``timeout`` seconds per attempt. Used by the portal (Access-Request, in a
request's thread: it waits at most ``deadline()`` seconds) and by the gateway's accounting
thread. A reply that does not verify (wrong authenticator or Message-Authenticator, another
id, truncated, garbage, oversized) is ignored like silence: RFC 2865 section 3.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hotspot.radius.packets import DECODE_ERRORS, MAX_PACKET

log = logging.getLogger(__name__)


class NoAnswer(Exception):
    """No server gave a valid reply in time."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int


def deadline(servers: int, attempts: int, timeout: float) -> float:
    """The longest one exchange may take."""
    return servers * attempts * timeout


def exchange(
    request: Any,
    servers: Sequence[Server],
    *,
    timeout: float,
    attempts: int,
    require_message_authenticator: bool = False,
    source: str = "",
) -> tuple[Any, Server]:
    """Send ``request`` (a pyrad packet) and return (its verified reply, who answered).
    Raises :class:`NoAnswer`."""
    raw = request.RequestPacket()
    for server in servers:
        for attempt in range(attempts):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                if source:
                    sock.bind((source, 0))
                try:
                    # Connected: only the server's own address can answer it.
                    sock.connect((server.host, server.port))
                    sock.send(raw)
                except OSError as exc:  # no route: the uplink is down
                    log.debug("radius: %s:%d: %s", server.host, server.port, exc)
                    time.sleep(min(timeout, 0.2))
                    continue
                reply = _await(sock, request, timeout, require_message_authenticator)
            if reply is not None:
                return reply, server
            log.debug("radius: no answer from %s:%d (try %d)", server.host, server.port, attempt)
    raise NoAnswer(", ".join(f"{s.host}:{s.port}" for s in servers))


def _await(sock: socket.socket, request: Any, timeout: float, enforce_ma: bool) -> Any | None:
    until = time.monotonic() + timeout
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        try:
            data = sock.recv(MAX_PACKET + 1)
        except OSError:  # ICMP port unreachable: nobody listens there
            time.sleep(min(left, 0.2))
            return None
        if len(data) > MAX_PACKET:
            log.warning("radius: dropped an oversized reply (%d+ bytes)", len(data))
            continue
        try:
            reply = request.CreateReply(packet=data)
            if request.VerifyReply(reply, data, enforce_ma=enforce_ma):
                return reply
            log.warning("radius: dropped a reply that does not verify (secret?)")
        except DECODE_ERRORS as exc:
            log.warning("radius: dropped a malformed reply: %s", exc)
