"""A small ctnetlink client: the conntrack entries one client originated, and their deletion,
over one raw ``NETLINK_NETFILTER`` socket with nothing but the standard library.

A login forgets the client's walled flows and a kick all of its flows (gateway/conntrack.py),
before the engine replies. pyroute2 0.9 did it with ``Conntrack.dump_entries`` and one
``delete`` per entry: each call ran an asyncio loop on the netlink thread, built and parsed
every attribute of every message as Python objects, and hopped threads twice — about 1.5 ms
of CPU for a client with no entry at all and more per entry (bench/README.md, "The conntrack
step"). The kernel's own part is one filtered dump (``CTA_FILTER``, Linux ≥ 5.8: only the
client's entries come back) plus one hash lookup per deletion. Here the request is 44 bytes
packed with :mod:`struct`, the answer is read into one buffer and only the two tuples are
parsed, and every deletion goes to the kernel in one ``send`` (one datagram of several
messages, acknowledged one by one).

A deletion names the entry by the original tuple exactly as the dump returned it (its
attribute's bytes sent back, zone included), so nothing is lost in translation, ICMP's
identifier included.

One socket for the daemon's life, opened at the first call, used under a lock: the engine
calls from its own thread under its lock, a kick from the control server's threads.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from gateway.netlink_recv import recv_queued

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_FILTER = 25
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_FILTER_ORIG_FLAGS = 1
CTA_FILTER_REPLY_FLAGS = 2
CTA_FILTER_FLAG_IP_SRC = 1 << 0
CTA_FILTER_FLAG_PROTO_NUM = 1 << 3
CTA_FILTER_FLAG_PROTO_SRC_PORT = 1 << 4

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big-endian; 0 here)
_NLATTR = struct.Struct("=HH")  # length, type
_U32 = struct.Struct("=I")
_U16_BE = struct.Struct("!H")
RECV_BUFFER = 1 << 16
# Deletions per datagram: a send larger than the socket's send buffer (~200 KB) is refused,
# and the acknowledgements (~36 bytes each, the whole request on a refusal) must fit in the
# receive buffer.
DELETES_PER_SEND = 200


def netfilter_socket() -> socket.socket:
    """A raw ``NETLINK_NETFILTER`` socket, bound (the kernel picks its port id); also the
    nf_tables client's (gateway/nftnetlink.py)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


_Parsed = TypeVar("_Parsed")


class CtNetlinkError(OSError):
    """The kernel refused a request (``errno`` is its error) or the answer was malformed."""


@dataclass(frozen=True)
class CtTuple:
    """One direction of a connection: protocol, addresses (dotted) and ports (0 when the
    protocol has none)."""

    proto: int
    saddr: str
    daddr: str
    sport: int
    dport: int


@dataclass(frozen=True)
class CtEntry:
    tuple_orig: CtTuple
    tuple_reply: CtTuple
    orig_attr: bytes  # the CTA_TUPLE_ORIG attribute as the kernel sent it: names the entry


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + bytes(-length % 4)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    body = _NFGENMSG.pack(socket.AF_INET, 0, 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def dump_request(ip: str, seq: int) -> bytes:
    """A dump of the IPv4 entries whose original source is ``ip``, filtered by the kernel."""
    tuple_orig = _nested(
        CTA_TUPLE_ORIG, _nested(CTA_TUPLE_IP, _attr(CTA_IP_V4_SRC, socket.inet_aton(ip)))
    )
    cta_filter = _nested(
        CTA_FILTER, _attr(CTA_FILTER_ORIG_FLAGS, _U32.pack(CTA_FILTER_FLAG_IP_SRC))
    )
    return _message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, tuple_orig + cta_filter)


def reply_port_dump_request(proto: int, port: int, seq: int) -> bytes:
    """A dump of the IPv4 entries whose replies come from ``port`` (of protocol ``proto``):
    the flows NAT redirected to that local port."""
    tuple_reply = _nested(
        CTA_TUPLE_REPLY,
        _nested(
            CTA_TUPLE_PROTO,
            _attr(CTA_PROTO_NUM, bytes([proto])),
            _attr(CTA_PROTO_SRC_PORT, _U16_BE.pack(port)),
        ),
    )
    flags = CTA_FILTER_FLAG_PROTO_NUM | CTA_FILTER_FLAG_PROTO_SRC_PORT
    cta_filter = _nested(CTA_FILTER, _attr(CTA_FILTER_REPLY_FLAGS, _U32.pack(flags)))
    return _message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, tuple_reply + cta_filter)


def full_dump_request(seq: int) -> bytes:
    """A dump of every IPv4 entry of the namespace (the client-flow index's seed)."""
    return _message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, b"")


def delete_request(orig_attr: bytes, seq: int) -> bytes:
    """The deletion of the entry whose ``CTA_TUPLE_ORIG`` attribute is ``orig_attr``,
    acknowledged."""
    return _message(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, orig_attr)


def _attrs(data: bytes | memoryview, start: int, end: int) -> dict[int, tuple[int, int]]:
    """``type -> (payload start, payload end)`` of the attributes in ``data[start:end]``."""
    found: dict[int, tuple[int, int]] = {}
    while start + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, start)
        if length < _NLATTR.size or start + length > end:
            raise CtNetlinkError(errno.EBADMSG, "malformed netlink attribute")
        found[kind & NLA_TYPE_MASK] = (start + _NLATTR.size, start + length)
        start += (length + 3) & ~3
    return found


def _tuple(data: bytes | memoryview, start: int, end: int) -> CtTuple:
    parts = _attrs(data, start, end)
    addresses = _attrs(data, *parts[CTA_TUPLE_IP]) if CTA_TUPLE_IP in parts else {}
    proto = _attrs(data, *parts[CTA_TUPLE_PROTO]) if CTA_TUPLE_PROTO in parts else {}

    def address(kind: int) -> str:
        if kind not in addresses:
            return ""
        a, b = addresses[kind]
        return socket.inet_ntoa(bytes(data[a:b]))

    def port(kind: int) -> int:
        if kind not in proto:
            return 0
        return int(_U16_BE.unpack_from(data, proto[kind][0])[0])

    number = data[proto[CTA_PROTO_NUM][0]] if CTA_PROTO_NUM in proto else 0
    return CtTuple(
        proto=int(number),
        saddr=address(CTA_IP_V4_SRC),
        daddr=address(CTA_IP_V4_DST),
        sport=port(CTA_PROTO_SRC_PORT),
        dport=port(CTA_PROTO_DST_PORT),
    )


def parse_entry(data: bytes | memoryview, start: int, end: int) -> CtEntry | None:
    """The entry in the ``IPCTNL_MSG_CT_NEW`` message body ``data[start:end]`` (after the
    netlink header), or None when it lacks a tuple."""
    parts = _attrs(data, start + _NFGENMSG.size, end)
    if CTA_TUPLE_ORIG not in parts or CTA_TUPLE_REPLY not in parts:
        return None
    orig_start, orig_end = parts[CTA_TUPLE_ORIG]
    return CtEntry(
        tuple_orig=_tuple(data, orig_start, orig_end),
        tuple_reply=_tuple(data, *parts[CTA_TUPLE_REPLY]),
        orig_attr=_nested(CTA_TUPLE_ORIG, bytes(data[orig_start:orig_end])),
    )


def messages(data: bytes | memoryview) -> list[tuple[int, int, int, int, int]]:
    """``(type, flags, sequence, body start, body end)`` of each netlink message in ``data``."""
    found = []
    start = 0
    while start + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _port = _NLMSGHDR.unpack_from(data, start)
        if length < _NLMSGHDR.size or start + length > len(data):
            raise CtNetlinkError(errno.EBADMSG, "malformed netlink message")
        found.append((kind, flags, seq, start + _NLMSGHDR.size, start + length))
        start += (length + 3) & ~3
    return found


def error_code(data: bytes | memoryview, start: int) -> int:
    """The (positive) errno of an ``NLMSG_ERROR`` body; 0 is an acknowledgement."""
    (code,) = struct.unpack_from("=i", data, start)
    return -int(code)


class CtNetlink:
    """The client's entries and their deletion; one socket, one caller at a time."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = netfilter_socket()
        return self._sock

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def entries_from(self, ip: str) -> list[CtEntry]:
        """Every IPv4 entry whose original source address is ``ip``."""
        return self.dump(lambda seq: dump_request(ip, seq))

    def dump(self, request: Callable[[int], bytes]) -> list[CtEntry]:
        """The entries a dump request (``request(seq)``) returns."""
        return self.dump_parsed(request, parse_entry)

    def dump_parsed(
        self,
        request: Callable[[int], bytes],
        parse: Callable[[bytes | memoryview, int, int], _Parsed | None],
    ) -> list[_Parsed]:
        """What ``parse(data, body start, body end)`` makes of each entry a dump request
        returns (None: skipped)."""
        with self._lock:
            sock = self._socket()
            seq = self._next_seq()
            sock.send(request(seq))
            found: list[_Parsed] = []
            while True:
                data = recv_queued(sock, RECV_BUFFER)
                for kind, _flags, msg_seq, start, end in messages(data):
                    if msg_seq != seq:
                        continue  # a late answer to an earlier, abandoned request
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = error_code(data, start)
                        raise CtNetlinkError(code, f"conntrack dump: {os.strerror(code)}")
                    parsed = parse(data, start, end)
                    if parsed is not None:
                        found.append(parsed)

    def delete(self, entries: list[CtEntry]) -> int:
        """Delete ``entries``; how many were deleted. An entry gone meanwhile (it timed
        out) is not an error; any other refusal raises, after every answer is read."""
        return self.delete_tuples([e.orig_attr for e in entries])

    def delete_tuples(self, tuples: list[bytes]) -> int:
        """Delete the entries named by their ``CTA_TUPLE_ORIG`` attributes, as :meth:`delete`."""
        deleted = 0
        failure: CtNetlinkError | None = None
        with self._lock:
            for first in range(0, len(tuples), DELETES_PER_SEND):
                done, refused = self._delete_chunk(tuples[first : first + DELETES_PER_SEND])
                deleted += done
                failure = failure or refused
        if failure is not None:
            raise failure
        return deleted

    def _delete_chunk(self, tuples: list[bytes]) -> tuple[int, CtNetlinkError | None]:
        """One datagram of deletions and its acknowledgements (one per message)."""
        sock = self._socket()
        seqs = [self._next_seq() for _ in tuples]
        wanted = set(seqs)
        sock.send(b"".join(delete_request(t, s) for t, s in zip(tuples, seqs, strict=True)))
        deleted = 0
        failure: CtNetlinkError | None = None
        while wanted:
            data = recv_queued(sock, RECV_BUFFER)
            for kind, _flags, msg_seq, start, _end in messages(data):
                if kind != NLMSG_ERROR or msg_seq not in wanted:
                    continue
                wanted.discard(msg_seq)
                code = error_code(data, start)
                if code == 0:
                    deleted += 1
                elif code != errno.ENOENT and failure is None:
                    failure = CtNetlinkError(code, f"conntrack delete: {os.strerror(code)}")
        return deleted, failure

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_DESTROY = 3
CT_NEW = NFNL_SUBSYS_CTNETLINK << 8  # IPCTNL_MSG_CT_NEW
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
EVENT_BUFFER = 4 << 20
_SOCK_FILTER = struct.Struct("=HBBI")  # code, jump if true, jump if false, constant
BPF_LD_W_ABS, BPF_LD_H_ABS, BPF_LD_B_ABS = 0x20, 0x28, 0x30
BPF_JEQ_K, BPF_RET_K = 0x15, 0x06


def _header_word(length: int, kind: int) -> int:
    """An attribute header (host order) as a BPF word load sees it (network order)."""
    return int.from_bytes(_NLATTR.pack(length, kind), "big")


def redirect_filter(ports: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program for the event socket: drop the events of IPv4 TCP/UDP flows
    whose replies do not come from one of ``ports``; keep everything else (a layout it does
    not know is passed on to be judged in Python, never dropped unseen). The offsets are
    those of an IPv4 TCP/UDP entry without zone: nlmsghdr (16), nfgenmsg (4), the
    original tuple (52) and the reply tuple (52), whose protocol part starts at 96."""
    checks = [
        (BPF_LD_B_ABS, 16, socket.AF_INET),  # nfgen_family
        (BPF_LD_W_ABS, 20, _header_word(52, CTA_TUPLE_ORIG | NLA_F_NESTED)),
        (BPF_LD_W_ABS, 72, _header_word(52, CTA_TUPLE_REPLY | NLA_F_NESTED)),
        (BPF_LD_W_ABS, 96, _header_word(28, CTA_TUPLE_PROTO | NLA_F_NESTED)),
        (BPF_LD_W_ABS, 108, _header_word(6, CTA_PROTO_SRC_PORT)),
    ]
    program: list[tuple[int, int, int, int]] = []
    # Each check: a load, then a jump that falls through on a match and goes to "keep"
    # otherwise; then the reply's source port against each port; then "drop", "keep".
    length = 2 * len(checks) + 1 + len(ports) + 2
    keep = length - 1
    for load, offset, value in checks:
        program.append((load, 0, 0, offset))
        here = len(program)
        program.append((BPF_JEQ_K, 0, keep - here - 1, value))
    program.append((BPF_LD_H_ABS, 0, 0, 112))  # the reply's source port (network order)
    for port in ports:
        here = len(program)
        program.append((BPF_JEQ_K, keep - here - 1, 0, port))
    program.append((BPF_RET_K, 0, 0, 0))  # drop
    program.append((BPF_RET_K, 0, 0, 0xFFFF))  # keep
    assert len(program) == length
    return program


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """``SO_ATTACH_FILTER``: its argument holds a pointer to the instructions."""
    import ctypes

    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def queued_events(sock: socket.socket | None, lost: Callable[[], None]) -> Iterator[bytes]:
    """Every datagram queued on a non-blocking event socket, until none is left; when the
    kernel dropped events (ENOBUFS: the socket overflowed) ``lost()`` is called and the
    rest still comes."""
    if sock is None:
        raise CtNetlinkError(errno.EBADF, "conntrack events: not started")
    while True:
        try:
            data = sock.recv(RECV_BUFFER)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            lost()
            continue
        yield data


class RedirectIndex:
    """The conntrack entries NAT redirected to local ports (the walled resolver's, the
    portal's), by original source address, kept by the kernel's events: a login finds the
    client's walled flows here instead of in a dump, which walks the kernel's whole hash
    table (machine-wide: ~10 ms of CPU with 262,144 buckets, whatever the client has).

    The index is seeded by dumps filtered on the reply's source port after the event
    socket is subscribed (an entry made meanwhile is in one or the other, or both); events
    of new and destroyed entries keep it. They are read by whoever calls next, under the
    lock: the event of a flow the kernel has confirmed is queued on the socket before the
    login's lookup begins, so a lookup drains the socket first and misses nothing. A
    full socket (``ENOBUFS``: events were lost) makes the next reader seed it again, once;
    if events are lost meanwhile too, a lookup answers None (ask the kernel). A thread of
    its own reads the socket between logins so that it rarely fills.
    """

    def __init__(self, client: CtNetlink, local: str, ports: dict[int, tuple[int, ...]]) -> None:
        """``local``: the address NAT redirects to (the gateway's on the LAN); ``ports``: local
        port -> its protocols (``{5300: (UDP, TCP), 8080: (TCP,)}``)."""
        self._client = client
        self._local = local
        self._ports = ports
        self._lock = threading.Lock()
        self._by_source: dict[str, dict[CtTuple, CtEntry]] = {}
        self._sock: socket.socket | None = None
        self._stale = True
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.seeds = 0  # how many times it was (re)built from dumps: once, unless events were lost

    def start(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
            attach_filter(sock, redirect_filter(tuple(self._ports)))
            groups = (1 << (NFNLGRP_CONNTRACK_NEW - 1)) | (1 << (NFNLGRP_CONNTRACK_DESTROY - 1))
            sock.bind((0, groups))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        with self._lock:
            self._sock = sock
            self._seed()
        self._thread = threading.Thread(target=self._read_between, name="ct-events", daemon=True)
        self._thread.start()

    def entries_from(self, ip: str) -> list[CtEntry] | None:
        """The redirected entries whose original source is ``ip``, as of now; None when the
        index cannot say (events were lost again while it was seeded again: a flood), and
        the caller must ask the kernel itself."""
        with self._lock:
            self._refresh()
            if self._stale:
                return None
            return list(self._by_source.get(ip, {}).values())

    def forget(self, entries: list[CtEntry]) -> None:
        """Entries just deleted (their events follow; this keeps the index exact meanwhile)."""
        with self._lock:
            for entry in entries:
                self._remove(entry)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(flows) for flows in self._by_source.values())

    def _seed(self) -> None:
        self._drain(seeding=True)  # whatever queued before: the dumps below supersede it
        self._by_source.clear()
        for port, protos in self._ports.items():
            for proto in protos:
                for entry in self._client.dump(
                    functools.partial(reply_port_dump_request, proto, port)
                ):
                    self._add(entry)
        self._stale = False
        self.seeds += 1
        self._drain()

    def _refresh(self) -> None:
        """Apply the queued events; after a loss, seed once more (not in a loop: a flood
        that outruns the seeding leaves the index stale, and lookups say so)."""
        self._drain()
        if self._stale:
            self._seed()

    def _drain(self, seeding: bool = False) -> None:
        """Apply every queued event (the socket is non-blocking); a loss marks it stale."""
        for data in queued_events(self._sock, self._mark_stale):
            if seeding:
                continue
            for kind, _flags, _seq, start, end in messages(data):
                entry = parse_entry(data, start, end) if kind in (CT_NEW, CT_DELETE) else None
                if entry is None or entry.tuple_reply.sport not in self._ports:
                    continue
                if kind == CT_NEW:
                    self._add(entry)
                else:
                    self._remove(entry)

    def _mark_stale(self) -> None:
        self._stale = True  # events were dropped: the index may be wrong

    def _add(self, entry: CtEntry) -> None:
        if entry.tuple_reply.saddr != self._local:
            return  # a flow to another host's port of the same number: not redirected
        self._by_source.setdefault(entry.tuple_orig.saddr, {})[entry.tuple_orig] = entry

    def _remove(self, entry: CtEntry) -> None:
        flows = self._by_source.get(entry.tuple_orig.saddr)
        if flows is not None:
            flows.pop(entry.tuple_orig, None)
            if not flows:
                del self._by_source[entry.tuple_orig.saddr]

    def _read_between(self) -> None:
        import select

        while not self._stopping.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                ready, _, _ = select.select([sock], [], [], 1.0)
            except (OSError, ValueError):  # closed meanwhile
                return
            if ready:
                with self._lock:
                    if self._sock is None:
                        return
                    try:
                        self._refresh()
                    except OSError:
                        log.exception("conntrack events: reading failed")
                        self._stale = True

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


BPF_ALU_AND_K = 0x54
RESEED_INTERVAL = 5.0  # seconds between two seedings of the client-flow index after a loss
# The offsets of an IPv4 event's original source: nlmsghdr (16), nfgenmsg (4), then the
# CTA_TUPLE_ORIG header (20), its CTA_TUPLE_IP header (24), CTA_IP_V4_SRC's header (28)
# and the address (32). The kernel puts the original tuple first, the source first in it.
_ORIG_AT, _IP_AT, _SRC_AT, _ADDRESS_AT = 20, 24, 28, 32


def _header_type(kind: int) -> int:
    """An attribute's type (host order) as a BPF half-word load sees it (network order)."""
    return int.from_bytes(struct.pack("=H", kind), "big")


def source_filter(network: ipaddress.IPv4Network) -> list[tuple[int, int, int, int]]:
    """A classic BPF program for the client-flow index's event socket: drop the events of
    IPv4 entries whose original source is outside ``network`` (the gateway's own flows, the
    uplink's) and of any other family (the index is IPv4's: the LAN's IPv6 is dropped by
    the table); keep everything else, a layout it does not know passed on to Python."""
    keep_offset = 0xFFFF
    program: list[tuple[int, int, int, int]] = [
        (BPF_LD_B_ABS, 0, 0, 16),  # nfgen_family
        (BPF_JEQ_K, 1, 0, socket.AF_INET),
        (BPF_RET_K, 0, 0, 0),  # not IPv4: drop
    ]
    checks = [
        (_ORIG_AT + 2, CTA_TUPLE_ORIG | NLA_F_NESTED),
        (_IP_AT + 2, CTA_TUPLE_IP | NLA_F_NESTED),
        (_SRC_AT, None),  # the source attribute's length and type: one word
    ]
    # Each check falls through on a match and jumps to "keep" otherwise (a layout unknown).
    length = len(program) + 2 * len(checks) + 3 + 2
    keep = length - 1
    for offset, kind in checks:
        if kind is None:
            program.append((BPF_LD_W_ABS, 0, 0, offset))
            value = _header_word(8, CTA_IP_V4_SRC)
        else:
            program.append((BPF_LD_H_ABS, 0, 0, offset))
            value = _header_type(kind)
        here = len(program)
        program.append((BPF_JEQ_K, 0, keep - here - 1, value))
    program.append((BPF_LD_W_ABS, 0, 0, _ADDRESS_AT))
    program.append((BPF_ALU_AND_K, 0, 0, int(network.netmask)))
    here = len(program)
    program.append((BPF_JEQ_K, keep - here - 1, 0, int(network.network_address)))
    program.append((BPF_RET_K, 0, 0, 0))  # another source: drop
    program.append((BPF_RET_K, 0, 0, keep_offset))  # keep
    assert len(program) == length
    return program


def source_and_tuple(data: bytes | memoryview, start: int, end: int) -> tuple[bytes, bytes] | None:
    """(original source address as 4 bytes, ``CTA_TUPLE_ORIG`` attribute as sent) of the
    IPv4 entry in the message body ``data[start:end]``; None for another family or when it
    lacks an original source. The usual layout is read at fixed offsets (an event a
    microsecond or two); any other is parsed attribute by attribute."""
    if data[start] != socket.AF_INET:
        return None
    first = start + _NFGENMSG.size
    if first + _NLATTR.size > end:
        return None
    length, kind = _NLATTR.unpack_from(data, first)
    src = first + (_SRC_AT - _ORIG_AT)
    if (
        kind & NLA_TYPE_MASK == CTA_TUPLE_ORIG
        and first + length <= end
        and length >= _ADDRESS_AT - _ORIG_AT + 4
        and _NLATTR.unpack_from(data, src) == (8, CTA_IP_V4_SRC)
        and _NLATTR.unpack_from(data, first + _NLATTR.size)[1] & NLA_TYPE_MASK == CTA_TUPLE_IP
    ):
        return bytes(data[src + 4 : src + 8]), bytes(data[first : first + length])
    parts = _attrs(data, first, end)
    if CTA_TUPLE_ORIG not in parts:
        return None
    orig_start, orig_end = parts[CTA_TUPLE_ORIG]
    ip = _attrs(data, orig_start, orig_end).get(CTA_TUPLE_IP)
    address = _attrs(data, *ip).get(CTA_IP_V4_SRC) if ip is not None else None
    if address is None or address[1] - address[0] != 4:
        return None
    return (
        bytes(data[address[0] : address[1]]),
        _nested(CTA_TUPLE_ORIG, bytes(data[orig_start:orig_end])),
    )


class ClientFlowIndex:
    """Every conntrack entry a LAN address originated, by that address, kept by the
    kernel's events: a kick or an expiry deletes its client's entries by their tuples (a
    hash lookup each) instead of dumping, which walks the kernel's whole hash table.

    Only the original tuple's attribute is kept (what a deletion names): 176 bytes an entry
    with the sets' and the dictionary's share, measured (bench/README.md, "A kick without a
    walk"). The kernel cannot hold more than ``nf_conntrack_max`` entries, so neither can
    the index (``limit``): more means it drifted (events it never saw), and it is dropped
    and seeded again.

    The event socket is subscribed to new and destroyed entries with a BPF filter that drops
    the other sources' in the kernel. A lookup reads the queued events first, under the
    lock (the event of an entry the kernel confirmed is on the socket before the kick
    began, so a running transfer's entry is never missed). The index is seeded by one dump
    of the whole table on its own thread, outside the lock, after subscribing: events
    queued meanwhile are applied on top once the dump is in. Until then, and whenever
    events were lost (``ENOBUFS``: a flood of new flows) until it is seeded again (at most
    every :data:`RESEED_INTERVAL` seconds), a lookup answers None: the caller dumps the
    client's entries as before. An entry the kernel made while nothing listened (the
    gateway stopped) sends no destroy event; it stays in the index until its client's next
    kick or the next seeding (deleting it again is no error).
    """

    def __init__(self, network: ipaddress.IPv4Network, limit: int) -> None:
        self._network = network
        self._netmask = int(network.netmask)
        self._prefix = int(network.network_address)
        self._limit = limit
        self._lock = threading.Lock()
        self._by_source: dict[bytes, set[bytes]] = {}
        self._count = 0
        self._sock: socket.socket | None = None
        self._stale = True
        self._seeded_at = -RESEED_INTERVAL
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._seeder = CtNetlink()  # its own socket: a seeding dump holds up no kick's dump
        self.seeds = 0  # how many times it was built from a dump
        self.losses = 0  # how many times it went wrong (events lost, or it outgrew the table)

    def start(self) -> None:
        """Subscribe (events queue from now on) and seed on the index's thread."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
            attach_filter(sock, source_filter(self._network))
            groups = (1 << (NFNLGRP_CONNTRACK_NEW - 1)) | (1 << (NFNLGRP_CONNTRACK_DESTROY - 1))
            sock.bind((0, groups))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        with self._lock:
            self._sock = sock
        self._thread = threading.Thread(target=self._run, name="ct-client-flows", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        """Whether a lookup now would answer from the index (seeded, nothing lost since)."""
        with self._lock:
            return not self._stale

    def tuples_from(self, ip: str) -> list[bytes] | None:
        """The ``CTA_TUPLE_ORIG`` attributes of the entries ``ip`` originated, as of now;
        None when the index cannot say (not seeded yet, or events were lost)."""
        key = socket.inet_aton(ip)
        with self._lock:
            if self._stale:
                return None  # (its thread may be seeding: the queued events are its)
            self._drain()
            if self._stale:
                return None
            return list(self._by_source.get(key, ()))

    def forget(self, ip: str, tuples: list[bytes]) -> None:
        """Entries just deleted (their destroy events follow; this frees them now)."""
        key = socket.inet_aton(ip)
        with self._lock:
            flows = self._by_source.get(key)
            if flows is None:
                return
            for orig in tuples:
                if orig in flows:
                    flows.discard(orig)
                    self._count -= 1
            if not flows:
                del self._by_source[key]

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def _in_network(self, source: bytes) -> bool:
        return int.from_bytes(source, "big") & self._netmask == self._prefix

    def _add(self, source: bytes, orig: bytes) -> None:
        flows = self._by_source.get(source)
        if flows is None:
            flows = self._by_source[source] = set()
        if orig not in flows:
            flows.add(orig)
            self._count += 1
            if self._count > self._limit:
                self._lost("more entries than the kernel's table holds")

    def _remove(self, source: bytes, orig: bytes) -> None:
        flows = self._by_source.get(source)
        if flows is not None and orig in flows:
            flows.discard(orig)
            self._count -= 1
            if not flows:
                del self._by_source[source]

    def _lost(self, why: str) -> None:
        """The index may be wrong: forget it (its memory too) until the next seeding."""
        if not self._stale:
            log.warning("conntrack client-flow index: %s; kicks dump until it is seeded", why)
            self.losses += 1
        self._stale = True
        self._by_source = {}
        self._count = 0

    def _drain(self, discard: bool = False) -> None:
        """Apply every queued event (the socket is non-blocking); a loss marks it stale."""
        for data in queued_events(
            self._sock, lambda: self._lost("events lost (the socket overflowed)")
        ):
            if discard or self._stale:
                continue
            for kind, _flags, _seq, start, end in messages(data):
                if self._stale:
                    break  # it outgrew the kernel's table: the rest waits for the seeding
                if kind not in (CT_NEW, CT_DELETE):
                    continue
                found = source_and_tuple(data, start, end)
                if found is None or not self._in_network(found[0]):
                    continue
                if kind == CT_NEW:
                    self._add(*found)
                else:
                    self._remove(*found)

    def _seed(self) -> None:
        """One dump of the whole table, outside the lock; the events queued meanwhile go on
        top of it. Lookups answer None until it is in."""
        with self._lock:
            self._drain(discard=True)  # older than the dump: it supersedes them
            self._stale = True
            self._by_source, self._count = {}, 0
        fresh: dict[bytes, set[bytes]] = {}
        count = 0
        try:
            for source, orig in self._seeder.dump_parsed(full_dump_request, source_and_tuple):
                if self._in_network(source):
                    fresh.setdefault(source, set()).add(orig)
                    count += 1
        finally:
            self._seeder.close()  # (a descriptor less between seedings, which are rare)
        with self._lock:
            if self._sock is None:
                return
            self._by_source, self._count = fresh, count
            self._stale = False
            self._seeded_at = time.monotonic()
            self.seeds += 1
            self._drain()  # a loss meanwhile leaves it stale again
        log.info("conntrack client-flow index seeded: %d entries", count)

    def _run(self) -> None:
        """Seed, then read the events between kicks (so that the socket rarely fills), and
        seed again after a loss, not more often than every RESEED_INTERVAL seconds."""
        import select

        while not self._stopping.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                if self._stale and time.monotonic() - self._seeded_at >= RESEED_INTERVAL:
                    self._seeded_at = time.monotonic()
                    self._seed()
                    continue
                ready, _, _ = select.select([sock], [], [], 1.0)
                if ready:
                    with self._lock:
                        if self._sock is None:
                            return
                        if self._stale:
                            self._drain(discard=True)
                        else:
                            self._drain()
            except (ValueError, OSError) as exc:  # closed meanwhile, or the kernel refused
                if self._stopping.is_set():
                    return
                log.warning("conntrack client-flow index: %s", exc)
                with self._lock:
                    self._lost(f"reading failed ({exc})")
                self._stopping.wait(1.0)

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._seeder.close()
