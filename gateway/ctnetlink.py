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
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

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


def delete_request(entry: CtEntry, seq: int) -> bytes:
    """The deletion of ``entry``, by its original tuple, acknowledged."""
    return _message(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, entry.orig_attr)


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
        with self._lock:
            sock = self._socket()
            seq = self._next_seq()
            sock.send(request(seq))
            found: list[CtEntry] = []
            while True:
                data = sock.recv(RECV_BUFFER)
                for kind, _flags, msg_seq, start, end in messages(data):
                    if msg_seq != seq:
                        continue  # a late answer to an earlier, abandoned request
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = error_code(data, start)
                        raise CtNetlinkError(code, f"conntrack dump: {os.strerror(code)}")
                    entry = parse_entry(data, start, end)
                    if entry is not None:
                        found.append(entry)

    def delete(self, entries: list[CtEntry]) -> int:
        """Delete ``entries``; how many were deleted. An entry gone meanwhile (it timed
        out) is not an error; any other refusal raises, after every answer is read."""
        deleted = 0
        failure: CtNetlinkError | None = None
        with self._lock:
            for first in range(0, len(entries), DELETES_PER_SEND):
                done, refused = self._delete_chunk(entries[first : first + DELETES_PER_SEND])
                deleted += done
                failure = failure or refused
        if failure is not None:
            raise failure
        return deleted

    def _delete_chunk(self, entries: list[CtEntry]) -> tuple[int, CtNetlinkError | None]:
        """One datagram of deletions and its acknowledgements (one per message)."""
        sock = self._socket()
        seqs = [self._next_seq() for _ in entries]
        wanted = set(seqs)
        sock.send(b"".join(delete_request(e, s) for e, s in zip(entries, seqs, strict=True)))
        deleted = 0
        failure: CtNetlinkError | None = None
        while wanted:
            data = sock.recv(RECV_BUFFER)
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
        sock = self._sock
        if sock is None:
            raise CtNetlinkError(errno.EBADF, "conntrack events: not started")
        while True:
            try:
                data = sock.recv(RECV_BUFFER)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._stale = True  # events were dropped: the index may be wrong
                continue
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
