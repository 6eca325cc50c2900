"""The bench's phones give their lease back (DHCPRELEASE) when they change MAC (issue #11,
item 6): without it a soak of 45 minutes emptied dnsmasq's pool of 999 addresses, one lease
per MAC change for the whole lease time. The frame, checked field by field (RFC 2131): the
bench's DHCP client is raw sockets, and a wrong field is silently ignored by the server."""

from __future__ import annotations

import socket
import struct

from bench.phones import DHCP_MAGIC, RELEASE, Dhcp, Lease

MAC = "02:d0:01:00:00:05"
LEASE = Lease(
    ip="10.10.3.69",
    server="10.10.0.1",
    router="10.10.0.1",
    prefixlen=22,
    seconds=3600,
    captive_api="",
)


class _Capture:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> int:
        self.frames.append(frame)
        return len(frame)


def _options(bootp: bytes) -> dict[int, bytes]:
    out, i = {}, 240
    while bootp[i] != 255:
        out[bootp[i]] = bootp[i + 2 : i + 2 + bootp[i + 1]]
        i += 2 + bootp[i + 1]
    return out


def test_a_release_goes_from_the_phones_address_to_the_server_that_leased_it():
    dhcp = Dhcp.__new__(Dhcp)  # no AF_PACKET socket (root) for building a frame
    dhcp.sock = _Capture()  # type: ignore[assignment]
    dhcp.release(MAC, LEASE)
    (frame,) = dhcp.sock.frames  # type: ignore[attr-defined]
    assert frame[6:12] == bytes.fromhex(MAC.replace(":", ""))  # from the phone's MAC
    ip = frame[14:34]
    assert socket.inet_ntoa(ip[12:16]) == LEASE.ip
    assert socket.inet_ntoa(ip[16:20]) == LEASE.server
    assert ip[9] == 17  # UDP
    assert struct.unpack("!HH", frame[34:38]) == (68, 67)
    bootp = frame[42:]
    assert bootp[0] == 1  # BOOTREQUEST
    assert socket.inet_ntoa(bootp[12:16]) == LEASE.ip  # ciaddr: the address given back
    assert bootp[28:34] == bytes.fromhex(MAC.replace(":", ""))  # chaddr
    assert bootp[236:240] == DHCP_MAGIC
    opts = _options(bootp)
    assert opts[53] == bytes([RELEASE])
    assert opts[54] == socket.inet_aton(LEASE.server)  # the server's identifier
