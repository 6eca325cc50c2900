"""Is a site on the DNS blocklist (issue #15, item 2)? Asked of the gateway's own resolver.

A logged-in device reaches the portal under another site's name only when the gateway's
resolver answered that name with the portal's address: the name is on the blocklist. The
intercept in front of Flask (portal/intercept.py) sends such a request to the splash with the
site as its target; the splash then asks the resolver once (one UDP query on the loopback,
half a second at most) whether the name resolves to the portal, and if so explains the block.
The portal never loads the list itself: a million names stay in dnsmasq alone.
"""

from __future__ import annotations

import secrets
import socket
import struct

RESOLVER = ("127.0.0.1", 53)
TIMEOUT = 0.5


def _query(name: str) -> tuple[int, bytes]:
    ident = secrets.randbelow(65536)
    labels = name.rstrip(".").split(".")
    if not all(0 < len(label) < 64 for label in labels):
        raise ValueError(name)
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(x)]) + x.encode("ascii") for x in labels) + b"\0"
    return ident, packet + struct.pack(">HH", 1, 1)


def addresses(name: str, resolver: tuple[str, int] = RESOLVER) -> list[str]:
    """The A records the gateway's resolver answers for ``name`` ([] when none or no answer)."""
    try:
        ident, packet = _query(name.encode("idna").decode("ascii"))
    except (ValueError, UnicodeError):
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.sendto(packet, resolver)
            data = sock.recv(1500)
        except OSError:
            return []
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != ident:
        return []
    ancount = struct.unpack(">H", data[6:8])[0]
    pos = 12
    while pos < len(data) and data[pos]:  # the question's name
        pos += data[pos] + 1
    pos += 5
    found = []
    for _ in range(ancount):
        if pos >= len(data):
            break
        pos += 2 if data[pos] & 0xC0 == 0xC0 else _skip_name(data, pos) - pos
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += length
    return found


def _skip_name(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos]:
        if data[pos] & 0xC0 == 0xC0:
            return pos + 2
        pos += data[pos] + 1
    return pos + 1


def is_blocked(name: str, portal_ip: str, resolver: tuple[str, int] = RESOLVER) -> bool:
    return portal_ip in addresses(name, resolver)
