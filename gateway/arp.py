"""One ARP who-has on the LAN, with a raw ``AF_PACKET`` socket and nothing but the standard
library.

The probe runs when a client's address has no usable neighbour entry (gateway/neighbours.py).
It used to be scapy's ``srp1``: the first probe imported scapy, which stayed in the daemon's
memory for good — 29 MB of RSS (its manufacturer table, its layers and ``cryptography``'s
bindings), more than the rest of the gateway's own code (issue #12, item 3; bench/README.md).
An ARP request is 42 bytes; this module builds it, sends it and reads the answer.

One socket per interface for the daemon's life (:class:`ArpProber`), not one per probe:
binding a packet socket that already listens for a protocol, and closing one, each wait for
the kernel's ``synchronize_net()`` (an RCU grace period) — 8 ms and 16 ms here, against
0.3 ms for the request and its answer. A probe per login made that the largest part of the
gap between an in-process authorize and one over the control socket (bench/README.md,
"The gap over the socket"). The socket is made listening for nothing (protocol 0), given a
classic BPF filter that keeps only incoming ARP *replies*, then bound to ARP: nothing else
the LAN broadcasts is queued for it between probes, and what is (replies to the kernel's own
requests) is read and dropped before each probe sends.

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
import threading
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


SO_ATTACH_FILTER = 26
_SOCK_FILTER = struct.Struct("=HBBI")  # code, jump if true, jump if false, constant
# ldh [12]; jeq ETH_P_ARP; ldh [20]; jeq ARP_REPLY; keep; drop
REPLIES_ONLY = (
    (0x28, 0, 0, 12),
    (0x15, 0, 3, ETH_P_ARP),
    (0x28, 0, 0, 20),
    (0x15, 0, 1, ARP_REPLY),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
)
# Replies to the kernel's own neighbour requests queue between probes: a few are enough.
RECEIVE_BUFFER = 16 << 10


def _replies_only(sock: socket.socket) -> None:
    import ctypes

    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in REPLIES_ONLY)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(REPLIES_ONLY), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class ArpProber:
    """Who-has probes on one interface, over one socket kept open (the module's docstring).
    Thread-safe: one probe at a time."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            # Protocol 0: no listener yet, so the bind below has none to take down (and
            # no grace period to wait for); the filter is in place before any frame comes.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                _replies_only(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                sock.bind((self.ifname, ETH_P_ARP))
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def probe(self, ip: str, timeout: float) -> str | None:
        """Ask the LAN who has ``ip``; the answering MAC (``aa:bb:…``) or None after
        ``timeout`` seconds. Needs ``CAP_NET_RAW`` (the daemon has it)."""
        target = socket.inet_aton(ip)
        with self._lock:
            s = self._socket()
            try:
                _drain(s)
                s.send(request_frame(s.getsockname()[4], interface_address(self.ifname), target))
                return _answer(s, target, timeout)
            except OSError:
                # The interface went away or was renamed: the next probe opens a new socket.
                self._close()
                raise

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()


def _drain(s: socket.socket) -> None:
    """Drop what queued since the last probe (answers to the kernel's own requests)."""
    while select.select([s], [], [], 0)[0]:
        s.recv(2048)


def _answer(s: socket.socket, target: bytes, timeout: float) -> str | None:
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


def probe(ifname: str, ip: str, timeout: float) -> str | None:
    """One probe on a socket of its own (tools and tests; the daemon keeps an
    :class:`ArpProber`)."""
    prober = ArpProber(ifname)
    try:
        return prober.probe(ip, timeout)
    finally:
        prober.close()
