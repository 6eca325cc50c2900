"""One ARP who-has on the LAN, with a raw ``AF_PACKET`` socket and nothing but the standard
library.

The probe runs when a client's address has no usable neighbour entry (gateway/neighbours.py).
It used to be scapy's ``srp1``: the first probe imported scapy, which stayed in the daemon's
memory for good — 29 MB of RSS (its manufacturer table, its layers and ``cryptography``'s
bindings), more than the rest of the gateway's own code (issue #12, item 3; bench/README.md).
An ARP request is 42 bytes; this module builds it, sends it and reads the answer.

What counts as the answer is what scapy counted: an ARP *reply* whose sender protocol
address is the probed address; its sender hardware address is the MAC. Our own request,
requests of others, replies about other addresses and frames too short to be ARP are
skipped until the timeout. Like any ARP, a host on the LAN may answer for an address that
is not its own: the probe's answer is a hint for a new session, and a running session's
address is pinned (a PERMANENT neighbour entry) so that later answers cannot move it.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
ARP_REPLY = 2
PACKET_OUTGOING = 4  # the kernel's copy of a frame this host sent
SIOCGIFADDR = 0x8915
BROADCAST = b"\xff" * 6
_ARP_HEADER = struct.Struct("!HHBBH")  # hardware type, protocol type, lengths, operation
FRAME_LEN = 14 + 28  # Ethernet header + ARP for IPv4 over Ethernet


def interface_address(ifname: str) -> bytes:
    """The interface's (primary) IPv4 address, packed; ``0.0.0.0`` when it has none, which
    makes the request an RFC 5227 probe (hosts answer it all the same)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifreq = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return bytes(4)
    return ifreq[20:24]


def request_frame(own_mac: bytes, own_ip: bytes, target_ip: bytes) -> bytes:
    """A broadcast who-has ``target_ip``, from ``own_mac`` / ``own_ip``."""
    return (
        BROADCAST
        + own_mac
        + struct.pack("!H", ETH_P_ARP)
        + _ARP_HEADER.pack(1, ETH_P_IP, 6, 4, ARP_REQUEST)
        + own_mac
        + own_ip
        + bytes(6)
        + target_ip
    )


def reply_sender(frame: bytes, target_ip: bytes) -> bytes | None:
    """The sender MAC of ``frame`` if it is an ARP reply from ``target_ip``, else None."""
    if len(frame) < FRAME_LEN or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = _ARP_HEADER.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, ARP_REPLY):
        return None
    if frame[28:32] != target_ip:
        return None
    return frame[22:28]


def probe(ifname: str, ip: str, timeout: float) -> str | None:
    """Ask the LAN behind ``ifname`` who has ``ip``; the answering MAC (``aa:bb:…``) or None
    after ``timeout`` seconds. Needs ``CAP_NET_RAW`` (the daemon has it)."""
    target = socket.inet_aton(ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        own_mac = s.getsockname()[4]
        s.send(request_frame(own_mac, interface_address(ifname), target))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            frame, address = s.recvfrom(2048)
            if address[2] == PACKET_OUTGOING:
                continue
            mac = reply_sender(frame, target)
            if mac is not None:
                return mac.hex(":")
    return None
