"""A minimal rtnetlink dump of tc classes and qdiscs (and neighbours), parsed with ``struct``;
the neighbour requests of a login and a kick (look one up, pin it, unpin it); and the HTB
class change and removal of a login and a kick.

pyroute2 decodes every attribute of every message generically; with a thousand clients a
class dump took 90–200 ms that way and the tick read four of them. Here one dump of 2,000
classes is one socket round trip and a few milliseconds of parsing, and only the fields the
gateway uses are read: kind, handle, parent, HTB ceiling, and the basic byte/packet counters.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.netlink_recv import recv_queued

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_GETQDISC = 38
RTM_NEWTCLASS = 40
RTM_DELTCLASS = 41
RTM_GETTCLASS = 42
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
NDA_DST = 1
NDA_LLADDR = 2

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_STATS2 = 7
TCA_STATS_BASIC = 1
TCA_STATS_PKT64 = 8
TCA_HTB_PARMS = 1
TCA_HTB_RATE64 = 6
TCA_HTB_CEIL64 = 7
TC_LINKLAYER_ETHERNET = 1

_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")
_RTATTR = struct.Struct("=HH")
_NDMSG = struct.Struct("=BxxxiHBB")
# struct tc_htb_opt: rate and ceil tc_ratespec (12 bytes each: ..., u32 rate), then 5 u32
_HTB_CEIL = struct.Struct("=12x8xI")
_BASIC = struct.Struct("=QI")
# The whole body of an HTB class message as the kernel lays it out (kind "htb", options with
# the parameters alone, statistics with the basic counters first), read in one unpack: the
# tick reads every client class of both devices every tick, and the attribute walk of
# :func:`_parse` cost ~15 µs a class (20 ms of interpreter per device and tick with a /22's
# pool). Anything laid out otherwise (a 64-bit rate, another kernel) takes the walk.
_HTB_FAST = struct.Struct("=BxxxiIII HH4s HHHH 20xI20x HHHH QI")
_HTB_KIND = b"htb\0"
# struct tc_htb_opt, written: two tc_ratespec (cell_log, linklayer, overhead, cell_align,
# mpu, rate), then buffer, cbuffer, quantum, level, prio.
_HTB_OPT = struct.Struct("=BBHhHI BBHhHI IIIII")
_HTB_OPTIONS_LEN = 4 + 4 + 44  # TCA_OPTIONS around TCA_HTB_PARMS alone
# A dump's messages are read a buffer at a time and parsed between recv() calls, which
# release the interpreter: another thread (a login) runs at least that often.
DUMP_RECV_BYTES = 1 << 15
# Requests of :func:`htb_classes` a ``send``: the socket's receive queue must hold a batch's
# answers (a class each, and the last request's acknowledgement).
GET_CHUNK = 128


class DumpError(OSError):
    pass


@dataclass(frozen=True)
class TcObject:
    ifindex: int
    kind: str
    handle: int
    parent: int
    ceil_bytes_per_s: int  # HTB classes only, 0 otherwise
    bytes: int
    packets: int


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def _parse(data: bytes, start: int, end: int) -> TcObject:
    _family, ifindex, handle, parent, _info = _TCMSG.unpack_from(data, start)
    kind, ceil, ceil64, nbytes, packets = "", 0, 0, 0, 0
    for atype, a, b in _attrs(data, start + _TCMSG.size, end):
        if atype == TCA_KIND:
            kind = data[a:b].split(b"\0", 1)[0].decode()
        elif atype == TCA_OPTIONS and kind == "htb":
            # (TCA_KIND comes first; other kinds number their options from 1 too: tbf's 1
            # is its own parameters, which must not be read as an HTB ceiling)
            for otype, oa, ob in _attrs(data, a, b):
                if otype == TCA_HTB_PARMS and ob - oa >= _HTB_CEIL.size:
                    (ceil,) = _HTB_CEIL.unpack_from(data, oa)
                elif otype == TCA_HTB_CEIL64 and ob - oa >= 8:
                    (ceil64,) = struct.unpack_from("=Q", data, oa)
        elif atype == TCA_STATS2:
            for stype, sa, sb in _attrs(data, a, b):
                if stype == TCA_STATS_BASIC and sb - sa >= _BASIC.size:
                    nbytes, packets32 = _BASIC.unpack_from(data, sa)
                    packets = packets or packets32
                elif stype == TCA_STATS_PKT64 and sb - sa >= 8:
                    (packets,) = struct.unpack_from("=Q", data, sa)
    return TcObject(ifindex, kind, handle, parent, ceil64 or ceil, nbytes, packets)


def dump(ifindex: int, what: int = RTM_GETTCLASS) -> list[TcObject]:
    """Every class (or qdisc) of one device, from one dump (the kernel dumps the qdiscs of
    every device whatever the request says: they are filtered here)."""
    out: list[TcObject] = []
    for data, start, end in _dump(what, _TCMSG.pack(0, ifindex, 0, 0, 0)):
        obj = _parse(data, start, end)
        if obj.ifindex == ifindex:
            out.append(obj)
    return out


def get_class(ifindex: int, handle: int) -> TcObject | None:
    """One class of one device (None when it does not exist), from one request: the kernel
    looks it up by handle, so this costs the same with ten classes or ten thousand. The
    answer comes back only when asked for (``NLM_F_ECHO``); the kernel acknowledges after it."""
    found: TcObject | None = None
    try:
        for data, start, end in _talk(
            RTM_GETTCLASS,
            NLM_F_REQUEST | NLM_F_ECHO | NLM_F_ACK,
            _TCMSG.pack(0, ifindex, handle, 0, 0),
        ):
            obj = _parse(data, start, end)
            if obj.ifindex == ifindex and obj.handle == handle:
                found = obj
    except DumpError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return found


def htb_counters(ifindex: int, qdisc: int = 0) -> list[tuple[int, int, int, int]]:
    """(handle, ceiling in bytes/s, bytes, packets) of every HTB class of one device, from
    one dump: what the tick's accounting and its reconcile need, and nothing else.

    ``qdisc`` (a handle, ``1:`` = 0x10000) asks the kernel for that qdisc's classes only
    (``tcm_parent``'s major): the client leaves' own classes are then not even made — one
    tbf class a client, and on a kernel with fq_codel a walk of its 1,024 flows each."""
    out: list[tuple[int, int, int, int]] = []
    body = _TCMSG.pack(0, ifindex, 0, qdisc, 0)
    with _request(RTM_GETTCLASS, NLM_F_REQUEST | NLM_F_DUMP, body) as (sock, seq):
        while not parse_htb_buffer(recv_queued(sock, DUMP_RECV_BYTES), seq, ifindex, out):
            pass
    return out


def parse_htb_buffer(
    data: bytes, seq: int, ifindex: int, out: list[tuple[int, int, int, int]]
) -> bool:
    """Append (handle, ceiling, bytes, packets) of the HTB classes of ``ifindex`` in one
    buffer of a class dump to ``out``; True at the dump's end. The messages of a buffer are
    read in one loop, an HTB class in one unpack; other classes (the tbf leaves' own) are
    skipped on their kind alone."""
    done, _answered = _parse_htb_messages(data, range(seq, seq + 1), ifindex, out)
    return done


def htb_classes(
    ifindex: int, handles: Sequence[int], chunk: int = GET_CHUNK
) -> list[tuple[int, int, int, int]]:
    """(handle, ceiling in bytes/s, bytes, packets) of the HTB classes ``handles`` of one
    device (those that exist), asked for one by one but ``chunk`` requests to a ``send``:
    what a tick needs when few of the pool's classes have sessions — its cost is the
    classes asked for, not the classes there are. The kernel answers each request while
    the batch is being sent, in order: a class (``NLM_F_ECHO``), or an error for one that
    does not exist (``ENOENT``, left out); only the batch's last request asks for an
    acknowledgement too (``NLM_F_ACK``), which ends the batch's answers."""
    out: list[tuple[int, int, int, int]] = []
    pack_header, pack_body = _NLMSGHDR.pack, _TCMSG.pack
    request_size = _NLMSGHDR.size + _TCMSG.size
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        seq = int.from_bytes(os.urandom(3), "little")
        for at in range(0, len(handles), chunk):
            batch = handles[at : at + chunk]
            last = len(batch) - 1
            sock.send(
                b"".join(
                    pack_header(
                        request_size,
                        RTM_GETTCLASS,
                        NLM_F_REQUEST | NLM_F_ECHO | (NLM_F_ACK if i == last else 0),
                        seq + i,
                        0,
                    )
                    + pack_body(0, ifindex, handle, 0, 0)
                    for i, handle in enumerate(batch)
                )
            )
            seqs = range(seq, seq + len(batch))
            while not _parse_htb_messages(
                recv_queued(sock, DUMP_RECV_BYTES), seqs, ifindex, out, seqs[-1]
            )[0]:
                pass
            seq += len(batch)
    finally:
        sock.close()
    return out


def _parse_htb_messages(
    data: bytes,
    seqs: range,
    ifindex: int,
    out: list[tuple[int, int, int, int]],
    end_seq: int | None = None,
) -> tuple[bool, int]:
    """The HTB classes of ``ifindex`` among the messages of one buffer answering the
    requests ``seqs``, appended to ``out``: (the end was seen — a dump's, or the
    acknowledgement of request ``end_seq`` —, the number of errors and acknowledgements
    seen). With ``end_seq`` (single requests) an ENOENT, a class asked for that does not
    exist, is not an error."""
    fast = _HTB_FAST.unpack_from
    fast_size = _HTB_FAST.size
    header = _NLMSGHDR.unpack_from
    offset, size = 0, len(data)
    answered = 0
    while offset + _NLMSGHDR.size <= size:
        length, mtype, _flags, mseq, _pid = header(data, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            raise DumpError("malformed netlink message")
        start, end = offset + _NLMSGHDR.size, offset + length
        offset += (length + 3) & ~3
        if mseq not in seqs:
            continue
        if mtype == NLMSG_DONE:
            return True, answered
        if mtype == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, start)
            if code and not (end_seq is not None and code == -errno.ENOENT):
                raise DumpError(-code, os.strerror(-code))
            answered += 1
            if mseq == end_seq:
                return True, answered
            continue
        if end - start >= fast_size:
            (_fam, index, handle, _parent, _info, klen, ktype, kind, olen, otype, plen, ptype,
             ceil, _slen, stype, blen, btype, nbytes, packets) = fast(data, start)  # fmt: skip
            if ktype == TCA_KIND and klen == 8 and kind != _HTB_KIND:
                continue  # a tbf leaf's class, say: not ours to read
            if (
                kind == _HTB_KIND
                and olen == _HTB_OPTIONS_LEN
                and otype & 0x3FFF == TCA_OPTIONS
                and plen == 48
                and ptype == TCA_HTB_PARMS
                and stype & 0x3FFF == TCA_STATS2
                and btype == TCA_STATS_BASIC
                and blen >= 4 + _BASIC.size
            ):
                if index == ifindex:
                    out.append((handle, ceil, nbytes, packets))
                continue
        obj = _parse(data, start, end)
        if obj.ifindex == ifindex and obj.kind == "htb":
            out.append((obj.handle, obj.ceil_bytes_per_s, obj.bytes, obj.packets))
    return False, answered


@dataclass(frozen=True)
class Neighbour:
    ip: str
    lladdr: bytes
    state: int  # NUD_* bits


def neighbours(ifindex: int) -> list[Neighbour]:
    """The IPv4 neighbour entries of one device, from one dump (pyroute2's decoder took about
    a millisecond per entry; the tick reads the pins with this)."""
    out: list[Neighbour] = []
    for data, start, end in _dump(RTM_GETNEIGH, _NDMSG.pack(socket.AF_INET, ifindex, 0, 0, 0)):
        family, index, state, _flags, _type = _NDMSG.unpack_from(data, start)
        if family != socket.AF_INET or index != ifindex:
            continue
        dst, lladdr = "", b""
        for atype, a, b in _attrs(data, start + _NDMSG.size, end):
            if atype == NDA_DST and b - a == 4:
                dst = socket.inet_ntoa(data[a:b])
            elif atype == NDA_LLADDR:
                lladdr = data[a:b]
        if dst:
            out.append(Neighbour(dst, lladdr, state))
    return out


def _neighbour_body(ifindex: int, ip: str, state: int = 0, lladdr: bytes = b"") -> bytes:
    body = _NDMSG.pack(socket.AF_INET, ifindex, state, 0, 0) + _rtattr(
        NDA_DST, socket.inet_aton(ip)
    )
    return body + (_rtattr(NDA_LLADDR, lladdr) if lladdr else b"")


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + bytes(-length % 4)


def neighbour(ifindex: int, ip: str) -> Neighbour | None:
    """The neighbour entry of ``ip`` on one device (None when there is none): one
    ``RTM_GETNEIGH`` for that address. The login's lookup; pyroute2 took ~0.7 ms for it,
    and a hop to its thread."""
    found: Neighbour | None = None
    try:
        for data, start, end in _talk(
            RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_ACK, _neighbour_body(ifindex, ip)
        ):
            family, index, state, _flags, _type = _NDMSG.unpack_from(data, start)
            lladdr = b""
            for atype, a, b in _attrs(data, start + _NDMSG.size, end):
                if atype == NDA_LLADDR:
                    lladdr = data[a:b]
            if family == socket.AF_INET and index == ifindex:
                found = Neighbour(ip, lladdr, state)
    except DumpError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return found


def set_neighbour(ifindex: int, ip: str, lladdr: bytes, state: int) -> None:
    """Make (or replace) the entry of ``ip`` with ``lladdr`` in ``state`` (a pin)."""
    body = _neighbour_body(ifindex, ip, state, lladdr)
    for _ in _talk(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body):
        pass


def delete_neighbour(ifindex: int, ip: str) -> None:
    """Remove the entry of ``ip`` (``DumpError`` ENOENT when there is none)."""
    for _ in _talk(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, _neighbour_body(ifindex, ip)):
        pass


def _dump(what: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(buffer, start, end) of the body of each message of one dump."""
    return _talk(what, NLM_F_REQUEST | NLM_F_DUMP, body)


@contextlib.contextmanager
def _request(what: int, flags: int, body: bytes) -> Iterator[tuple[socket.socket, int]]:
    """A fresh rtnetlink socket with one request sent: (the socket, the request's sequence)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        seq = int.from_bytes(os.urandom(3), "little")
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), what, flags, seq, 0) + body)
        yield sock, seq
    finally:
        sock.close()


def _talk(what: int, flags: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(buffer, start, end) of the body of each message answering one request, until the
    dump's end or the request's acknowledgement."""
    with _request(what, flags, body) as (sock, seq):
        while True:
            data = recv_queued(sock, DUMP_RECV_BYTES)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise DumpError("malformed netlink message")
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                        if code:
                            raise DumpError(-code, os.strerror(-code))
                        if (flags & NLM_F_DUMP) != NLM_F_DUMP:  # (REPLACE shares a bit)
                            return  # the acknowledgement of a single request
                    else:
                        yield data, offset + _NLMSGHDR.size, offset + length
                offset += (length + 3) & ~3


# The kernel's scheduler clock (/proc/net/psched: µs to ticks, the clock's resolution):
# HTB's buffers are times to send a burst, in ticks. tc and pyroute2 read the same file.
def _tick_in_usec() -> float:
    try:
        with open("/proc/net/psched") as psched:
            t2us, us2t, clock_res, _hz = (int(x, 16) for x in psched.read().split())
    except (OSError, ValueError):
        return 1.0  # no tc scheduler here (a unit test's container); tc's own default
    return t2us / us2t * (clock_res / 1_000_000)


TICK_IN_USEC = _tick_in_usec()


def xmit_ticks(rate_bytes: int, size: int) -> int:
    """Ticks to send ``size`` bytes at ``rate_bytes`` a second (tc's ``tc_calc_xmittime``,
    as tc and pyroute2 compute it)."""
    return int(int(1_000_000 * size / rate_bytes) * TICK_IN_USEC)


def htb_class_body(
    ifindex: int,
    classid: int,
    parent: int,
    rate_bytes: int,
    ceil_bytes: int,
    burst: int,
    cburst: int,
    quantum: int,
) -> bytes:
    """The body of an ``RTM_NEWTCLASS`` for one HTB class (rates in bytes a second, bursts
    in bytes). The rate tables tc sends are left out: the kernel uses them only to guess
    the link layer, which is given here (Ethernet, what it guesses from tc's tables)."""
    rate32, ceil32 = min(rate_bytes, 0xFFFFFFFF), min(ceil_bytes, 0xFFFFFFFF)
    # cell_log 3 and cell_align -1: what tc writes for a 1,600-byte MTU (unused without
    # the tables, kept so that `tc class show` reads the same either way)
    params = _HTB_OPT.pack(
        3, TC_LINKLAYER_ETHERNET, 0, -1, 0, rate32,
        3, TC_LINKLAYER_ETHERNET, 0, -1, 0, ceil32,
        xmit_ticks(rate_bytes, burst), xmit_ticks(ceil_bytes, cburst), quantum, 0, 0,
    )  # fmt: skip
    options = _rtattr(TCA_HTB_PARMS, params)
    if rate_bytes > rate32:
        options += _rtattr(TCA_HTB_RATE64, struct.pack("=Q", rate_bytes))
    if ceil_bytes > ceil32:
        options += _rtattr(TCA_HTB_CEIL64, struct.pack("=Q", ceil_bytes))
    return (
        _TCMSG.pack(socket.AF_UNSPEC, ifindex, classid, parent, 0)
        + _rtattr(TCA_KIND, _HTB_KIND)
        + _rtattr(TCA_OPTIONS, options)
    )


def put_htb_class(body: bytes) -> None:
    """Create or change one HTB class (``tc class replace``) from its message body
    (:func:`htb_class_body`): one message and its acknowledgement. Through pyroute2 a
    login's class change cost ~3 ms of interpreter (its generic encoder and two 256-entry
    rate tables) and a hop to its thread."""
    for _ in _talk(RTM_NEWTCLASS, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body):
        pass


def delete_class(ifindex: int, classid: int, parent: int) -> None:
    """Remove one class and its qdiscs (``DumpError`` ENOENT when there is none)."""
    body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, classid, parent, 0)
    for _ in _talk(RTM_DELTCLASS, NLM_F_REQUEST | NLM_F_ACK, body):
        pass
