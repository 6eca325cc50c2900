"""A small nf_tables netlink client: a login's set and map elements in one batch, and the
portal-peer set read back, over one raw ``NETLINK_NETFILTER`` socket with nothing but the
standard library.

A login changes three elements (its ``ip . mac`` pair and its two classid map entries), a
kick removes them. Through libnftables that was a JSON document parsed by the library, a
cache fetch (the generation, the table, its chains, sets and objects listed from the
kernel before the change could be checked), then the batch: 0.5–1.2 ms a login on this
machine, and more when the ruleset is large. The kernel's own part is one batch: a
``NFNL_MSG_BATCH_BEGIN``, one ``NFT_MSG_NEWSETELEM`` or ``NFT_MSG_DELSETELEM`` per set,
``NFNL_MSG_BATCH_END`` — applied as one transaction, all or nothing, like any nftables
batch: if one message is refused, the kernel aborts the whole batch and nothing changed.
Here the batch is packed with :mod:`struct` from the same JSON commands the plan builds
(``gateway.ruleset.element_command``), with no cache: the elements' layout is that of the
gateway's own sets (:data:`KINDS`, checked against ``gateway.ruleset`` by a unit test).

What it does not know — a set of another layout, an element with a timeout or an interval —
it does not encode (:func:`encode_batch` returns None) and the caller uses libnftables.
A malformed address, MAC or classid is refused before anything is sent
(:class:`MalformedElement`). The table's creation, the walled garden and the reconcile's
full look stay with libnftables (gateway/nftables.py).

Every element message asks for an acknowledgement; the kernel delivers them (and the
errors) once the whole batch is processed, so one ``send`` and the reads of its answers
are the whole exchange. The socket asks for short errors (``NETLINK_CAP_ACK``): a refusal
is the errno of the first message refused.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from gateway import ruleset
from gateway.ctnetlink import NLMSG_DONE, NLMSG_ERROR, error_code, messages, netfilter_socket
from gateway.netlink_recv import recv_queued

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NFPROTO_INET = 1

NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10  # the ruleset changed while the dump ran: its parts disagree
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_EXPIRATION = 5
NFTA_DATA_VALUE = 1

FAMILIES = {"inet": NFPROTO_INET}
# A batch larger than this goes through libnftables (a reconcile's thousands of elements):
# one datagram must fit the socket's send buffer.
MAX_BATCH = 128 << 10
RECV_BUFFER = 1 << 16
TIMEOUT_SECONDS = 5.0

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NFGENMSG = struct.Struct("!BBH")  # family, version, resource id (big-endian)
_NLATTR = struct.Struct("=HH")  # length, type
_CLASSID = struct.Struct("=I")  # tc handles are host-order u32s to nftables
_BE64 = struct.Struct("!Q")

# The key (and map value) of each of the gateway's sets a login or kick touches, in the
# order of a concatenation; mirrors gateway/ruleset.py's definitions (a test compares).
KINDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    ruleset.AUTHORIZED: (("ipv4_addr", "ether_addr"), None),
    ruleset.BLOCKED: (("ether_addr",), None),
    ruleset.DOWN_CLASS: (("ipv4_addr",), "classid"),
    ruleset.UP_CLASS: (("ipv4_addr",), "classid"),
    ruleset.PORTAL_PEERS: (("ipv4_addr", "ether_addr"), None),
}


class MalformedElement(ValueError):
    """An element that is not what its set holds (a hostile or broken value): refused
    before anything reaches the kernel."""


class NftNetlinkError(OSError):
    """The kernel refused the batch (``errno`` is its error), or did not answer."""


# -- encoding ---------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + bytes(-length % 4)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _string(text: str) -> bytes:
    raw = text.encode()
    if b"\0" in raw or not raw or len(raw) > 255:
        raise MalformedElement(f"not a table or set name: {text!r}")
    return raw + b"\0"


def ipv4(value: Any) -> bytes:
    """Four bytes, network order; only a dotted IPv4 address (no prefix, no name)."""
    if not isinstance(value, str):
        raise MalformedElement(f"not an IPv4 address: {value!r}")
    try:
        return ipaddress.IPv4Address(value).packed
    except ValueError:
        raise MalformedElement(f"not an IPv4 address: {value!r}") from None


def ether(value: Any) -> bytes:
    """Six bytes from ``aa:bb:cc:dd:ee:ff`` (two hex digits a byte, nothing else)."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise MalformedElement(f"not a MAC address: {value!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise MalformedElement(f"not a MAC address: {value!r}") from None


def classid(value: Any) -> bytes:
    """``1:2a`` → the u32 handle 0x0001002a, host order (nftables' ``classid`` type)."""
    parts = value.split(":") if isinstance(value, str) else []
    try:
        major, minor = (int(p, 16) for p in parts) if len(parts) == 2 else (-1, -1)
    except ValueError:
        major = minor = -1
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF) or any(
        not p or len(p) > 4 for p in parts
    ):
        raise MalformedElement(f"not a class id: {value!r}")
    return _CLASSID.pack(major << 16 | minor)


_FIELDS = {"ipv4_addr": ipv4, "ether_addr": ether, "classid": classid}


def key_bytes(types: tuple[str, ...], value: Any) -> bytes:
    """A set key: one field, or a concatenation (``{"concat": [...]}``) whose fields are
    each padded to 4 bytes, as nftables lays them out in its registers."""
    if len(types) == 1:
        return _FIELDS[types[0]](value)
    fields = value.get("concat") if isinstance(value, dict) and len(value) == 1 else None
    if not isinstance(fields, list) or len(fields) != len(types):
        raise MalformedElement(f"not a {' . '.join(types)} element: {value!r}")
    out = b""
    for kind, field in zip(types, fields, strict=True):
        raw = _FIELDS[kind](field)
        out += raw + bytes(-len(raw) % 4)
    return out


def _element(name: str, verb: str, elem: Any) -> bytes:
    types, data = KINDS[name]
    if data is not None and verb == "add":
        if not (isinstance(elem, list) and len(elem) == 2):
            raise MalformedElement(f"not a map element of {name}: {elem!r}")
        key, value = elem
        return _nested(
            NFTA_LIST_ELEM,
            _nested(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key_bytes(types, key))),
            _nested(NFTA_SET_ELEM_DATA, _attr(NFTA_DATA_VALUE, _FIELDS[data](value))),
        )
    return _nested(
        NFTA_LIST_ELEM, _nested(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key_bytes(types, elem)))
    )


def _message(kind: int, flags: int, seq: int, family: int, payload: bytes) -> bytes:
    body = _NFGENMSG.pack(family, 0, 0) + payload
    full = (NFNL_SUBSYS_NFTABLES << 8) | kind
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), full, flags, seq, 0) + body


def _batch_marker(kind: int, seq: int) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, NFNL_SUBSYS_NFTABLES)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def _element_command(cmd: Any) -> tuple[str, dict[str, Any]] | None:
    """(verb, the element object) of an ``add``/``delete`` of elements, else None."""
    if not isinstance(cmd, dict) or len(cmd) != 1:
        return None
    ((verb, body),) = cmd.items()
    if verb not in ("add", "delete") or not isinstance(body, dict) or set(body) != {"element"}:
        return None
    element = body["element"]
    if not isinstance(element, dict) or set(element) != {"family", "table", "name", "elem"}:
        return None
    return verb, element


def encode_batch(commands: Iterable[Any], first_seq: int) -> tuple[bytes, list[int]] | None:
    """The batch for ``commands`` (JSON element commands of :mod:`gateway.ruleset`), with
    the sequence numbers of the messages that will be acknowledged; None when a command is
    not one this module encodes (libnftables then does). Raises :class:`MalformedElement`
    for a malformed value in a set it knows."""
    parts: list[bytes] = []
    acked: list[int] = []
    seq = first_seq
    for cmd in commands:
        found = _element_command(cmd)
        if found is None:
            return None
        verb, element = found
        name, family = element["name"], FAMILIES.get(element["family"])
        elems = element["elem"]
        if name not in KINDS or family is None or not isinstance(elems, list):
            return None
        if any(isinstance(e, dict) and "elem" in e for e in elems):
            return None  # timeouts, counters: libnftables' business
        seq += 1
        kind = NFT_MSG_NEWSETELEM if verb == "add" else NFT_MSG_DELSETELEM
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if verb == "add" else 0)
        payload = (
            _attr(NFTA_SET_ELEM_LIST_TABLE, _string(element["table"]))
            + _attr(NFTA_SET_ELEM_LIST_SET, _string(name))
            + _nested(NFTA_SET_ELEM_LIST_ELEMENTS, *(_element(name, verb, e) for e in elems))
        )
        parts.append(_message(kind, flags, seq, family, payload))
        acked.append(seq)
    if not parts:
        return b"", []
    batch = (
        _batch_marker(NFNL_MSG_BATCH_BEGIN, first_seq)
        + b"".join(parts)
        + _batch_marker(NFNL_MSG_BATCH_END, seq + 1)
    )
    return batch, acked


# -- decoding -----------------------------------------------------------------------------


def _attrs(data: bytes | memoryview, start: int, end: int) -> list[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in ``data[start:end]``."""
    out = []
    while start + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, start)
        if length < _NLATTR.size or start + length > end:
            raise NftNetlinkError(errno.EBADMSG, "malformed nf_tables attribute")
        out.append((kind & NLA_TYPE_MASK, start + _NLATTR.size, start + length))
        start += (length + 3) & ~3
    return out


def _first(attrs: list[tuple[int, int, int]], kind: int) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in attrs if k == kind), None)


Peer = tuple[str, str, int | None, int | None]  # address, MAC, timeout and time left (ms)


def parse_peer_elements(
    data: bytes | memoryview, start: int, end: int, at: bytes | None = None
) -> list[Peer]:
    """(address, MAC, timeout, time left) of each element of one ``NEWSETELEM`` body (after
    its nfgenmsg) of an ``ipv4_addr . ether_addr`` set. The kernel leaves out an element's
    timeout when it is the set's own (then None), and its time left when it has none.
    ``at`` (an address, packed): only its elements, the others skipped on their key's first
    bytes, before anything is decoded."""
    out: list[Peer] = []
    top = _attrs(data, start, end)
    elems = _first(top, NFTA_SET_ELEM_LIST_ELEMENTS)
    if elems is None:
        return out
    for kind, s, e in _attrs(data, *elems):
        if kind != NFTA_LIST_ELEM:
            continue
        if at is not None and _elsewhere(data, s - _NLATTR.size, e, at):
            continue
        fields = _attrs(data, s, e)
        key = _first(fields, NFTA_SET_ELEM_KEY)
        if key is None:
            continue
        value = _first(_attrs(data, *key), NFTA_DATA_VALUE)
        if value is None or value[1] - value[0] < 10:
            continue
        raw = bytes(data[value[0] : value[1]])
        if at is not None and raw[:4] != at:
            continue
        ip = socket.inet_ntoa(raw[:4])
        mac = raw[4:10].hex(":")
        timeout, expires = (
            _first(fields, NFTA_SET_ELEM_TIMEOUT),
            _first(fields, NFTA_SET_ELEM_EXPIRATION),
        )
        out.append(
            (
                ip,
                mac,
                None if timeout is None else _BE64.unpack_from(data, timeout[0])[0],
                None if expires is None else _BE64.unpack_from(data, expires[0])[0],
            )
        )
    return out


# The first attributes of an element of the gateway's sets, as this kernel lays them out:
# the element (a list entry), its key, the key's value — length and type each.
_ELEMENT_HEAD = struct.Struct("=HHHHHH")
_DATA_HEAD = struct.Struct("=HHHH")  # a map element's data: its length and type, its value's


def _elsewhere(data: bytes | memoryview, element: int, end: int, at: bytes) -> bool:
    """True when the element at ``element`` is laid out as this kernel dumps one (its key
    first) and its key does not start with the address ``at``: one unpack, nothing decoded.
    False when it may be ``at``'s, or when its layout is another (then it is walked)."""
    if end - element < _ELEMENT_HEAD.size + len(at):
        return False
    _len, etype, klen, ktype, vlen, vtype = _ELEMENT_HEAD.unpack_from(data, element)
    return (
        etype & NLA_TYPE_MASK == NFTA_LIST_ELEM
        and ktype & NLA_TYPE_MASK == NFTA_SET_ELEM_KEY
        and vtype == NFTA_DATA_VALUE
        and vlen >= _NLATTR.size + len(at)
        and data[element + 12 : element + 12 + len(at)] != at
    )


def element_values(
    data: bytes | memoryview, start: int, end: int
) -> list[tuple[bytes, bytes | None]]:
    """(key, data or None) of each element of one ``NEWSETELEM`` body (after its nfgenmsg).

    A tick reads some 40,000 of them at a /18 with 10,000 sessions, so an element laid out as
    the gateway's are (its key, then a map's data, nothing else) is read with two unpacks;
    any other (a flag, a timeout, an expression) takes the attribute walk."""
    out: list[tuple[bytes, bytes | None]] = []
    elems = _first(_attrs(data, start, end), NFTA_SET_ELEM_LIST_ELEMENTS)
    if elems is None:
        return out
    at, stop = elems
    head, data_head, attr_head = (
        _ELEMENT_HEAD.unpack_from,
        _DATA_HEAD.unpack_from,
        _NLATTR.unpack_from,
    )
    while at + _NLATTR.size <= stop:
        length, kind = attr_head(data, at)
        if length < _NLATTR.size or at + length > stop:
            raise NftNetlinkError(errno.EBADMSG, "malformed nf_tables attribute")
        end_of_element, following = at + length, at + ((length + 3) & ~3)
        if length >= _ELEMENT_HEAD.size:
            _len, etype, klen, ktype, vlen, vtype = head(data, at)
            # (the kernel's dumps leave NLA_F_NESTED off their nests; a request has it on)
            if (
                etype & NLA_TYPE_MASK == NFTA_LIST_ELEM
                and ktype & NLA_TYPE_MASK == NFTA_SET_ELEM_KEY
                and vtype == NFTA_DATA_VALUE
                and klen == _NLATTR.size + ((vlen + 3) & ~3)
                and vlen > _NLATTR.size
            ):
                key = bytes(data[at + 12 : at + 8 + vlen])
                rest = at + _NLATTR.size + klen
                if rest == end_of_element:
                    out.append((key, None))
                    at = following
                    continue
                if rest + _DATA_HEAD.size <= end_of_element:
                    dlen, dtype, vlen, vtype = data_head(data, rest)
                    if (
                        dtype & NLA_TYPE_MASK == NFTA_SET_ELEM_DATA
                        and vtype == NFTA_DATA_VALUE
                        and dlen == _NLATTR.size + ((vlen + 3) & ~3)
                        and rest + dlen == end_of_element
                        and vlen > _NLATTR.size
                    ):
                        out.append((key, bytes(data[rest + 8 : rest + 4 + vlen])))
                        at = following
                        continue
        if kind & NLA_TYPE_MASK == NFTA_LIST_ELEM:
            found = _walked_element(data, at + _NLATTR.size, end_of_element)
            if found is not None:
                out.append(found)
        at = following
    return out


def _walked_element(
    data: bytes | memoryview, start: int, end: int
) -> tuple[bytes, bytes | None] | None:
    """(key, data or None) of one element read attribute by attribute."""
    fields = _attrs(data, start, end)
    found: list[bytes | None] = []
    for kind in (NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA):
        nest = _first(fields, kind)
        span = None if nest is None else _first(_attrs(data, *nest), NFTA_DATA_VALUE)
        found.append(None if span is None else bytes(data[span[0] : span[1]]))
    key, value = found
    return None if key is None else (key, value)


_T = TypeVar("_T")
LoginSets = tuple[set[tuple[str, str]], dict[str, str], dict[str, str], set[str]]


# classid → its text (at most 65,536 handles of major 1 a gateway uses; kept while it runs)
_CLASSID_TEXT: dict[bytes, str] = {}


def _classids(values: Iterable[bytes | None]) -> list[str]:
    out = []
    for raw in values:
        text = _CLASSID_TEXT.get(raw) if raw is not None else None
        if text is None:
            if raw is None or len(raw) != _CLASSID.size:
                raise NftNetlinkError(errno.EBADMSG, "nf_tables: a class map element's classid")
            (handle,) = _CLASSID.unpack(raw)
            text = f"{handle >> 16:x}:{handle & 0xFFFF:x}"  # as libnftables prints it
            if len(_CLASSID_TEXT) < 1 << 17:
                _CLASSID_TEXT[raw] = text
        out.append(text)
    return out


def _shortest(keys: list[bytes], at_least: int, what: str) -> None:
    if keys and min(map(len, keys)) < at_least:
        raise NftNetlinkError(errno.EBADMSG, f"nf_tables: {what} shorter than {at_least} bytes")


def login_sets_of(found: dict[str, list[tuple[bytes, bytes | None]]]) -> LoginSets:
    """(authorized (ip, mac) pairs, down map, up map, blocked MACs) — what
    ``gateway.nftables.parse_elements`` makes of libnftables' listing — from the elements
    of the four sets, as :func:`element_values` reads them. (Inline, and the classids'
    text kept: some 30,000 elements a tick at 10,000 sessions.)"""
    ntoa = socket.inet_ntoa  # OSError for a key not 4 bytes long
    pairs = [k for k, _v in found.get(ruleset.AUTHORIZED, ())]
    _shortest(pairs, 10, "an authorized pair")
    authorized = {(ntoa(k[:4]), k[4:10].hex(":")) for k in pairs}
    maps = []
    for name in (ruleset.DOWN_CLASS, ruleset.UP_CLASS):
        elements = found.get(name, [])
        keys = [ntoa(k) for k, _v in elements]
        maps.append(dict(zip(keys, _classids(v for _k, v in elements), strict=True)))
    macs = [k for k, _v in found.get(ruleset.BLOCKED, ())]
    _shortest(macs, 6, "a blocked MAC")
    blocked = {k[:6].hex(":") for k in macs}
    return authorized, maps[0], maps[1], blocked


# -- the socket ---------------------------------------------------------------------------


class NftNetlink:
    """One socket for the daemon's life, opened at the first call; one caller at a time."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = netfilter_socket()
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
                sock.settimeout(TIMEOUT_SECONDS)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _seqs(self, n: int) -> int:
        """The first of ``n`` consecutive sequence numbers, never wrapping inside them."""
        if self._seq + n >= 0xFFFFFFFF:
            self._seq = 0
        first = self._seq + 1
        self._seq += n
        return first

    def apply(self, commands: list[Any]) -> bool:
        """Apply ``commands`` as one batch; False (nothing sent) when they are not all
        element commands this module encodes, or the batch would be too large. Raises
        :class:`MalformedElement` before sending, :class:`NftNetlinkError` when the kernel
        refused the batch (then nothing of it was applied)."""
        with self._lock:
            first = self._seqs(len(commands) + 2)
            encoded = encode_batch(commands, first)
            if encoded is None:
                return False
            batch, acked = encoded
            if not acked:
                return True
            if len(batch) > MAX_BATCH:
                return False
            with self._exchange() as sock:
                sock.send(batch)
                self._acknowledged(sock, first, set(acked))
            return True

    @contextlib.contextmanager
    def _exchange(self) -> Iterator[socket.socket]:
        """The socket for one request and its answers. Unanswered (a timeout) or broken, it
        is dropped: answers still to come would be read as the next request's. The kernel's
        refusal (NftNetlinkError) is the last answer: the socket stays."""
        try:
            yield self._socket()
        except TimeoutError:
            self._reset()
            raise NftNetlinkError(errno.ETIMEDOUT, "nf_tables: no answer") from None
        except NftNetlinkError:
            raise
        except OSError:
            self._reset()
            raise

    def _acknowledged(self, sock: socket.socket, begin: int, wanted: set[int]) -> None:
        """Read the batch's answers: an acknowledgement per element message, or the error of
        the batch marker (no other answer follows one)."""
        failure: NftNetlinkError | None = None
        while wanted:
            data = recv_queued(sock, RECV_BUFFER)
            for kind, _flags, seq, start, _end in messages(data):
                if kind != NLMSG_ERROR:
                    continue
                code = error_code(data, start)
                if seq == begin and code:
                    raise NftNetlinkError(code, f"nf_tables batch: {os.strerror(code)}")
                if seq not in wanted:
                    continue
                wanted.discard(seq)
                if code and failure is None:
                    failure = NftNetlinkError(code, f"nf_tables: {os.strerror(code)}")
        if failure is not None:
            raise failure

    def set_elements(self, family: str, table: str, name: str, at: str | None = None) -> list[Peer]:
        """The elements of an ``ipv4_addr . ether_addr`` set, with their timeouts: one dump,
        no cache; with ``at``, only that address's (the kernel cannot look up half of a
        concatenated key, so the dump is whole, but the others are not decoded)."""
        found: list[Peer] = []
        parse = parse_peer_elements
        if at is not None:
            parse = functools.partial(parse_peer_elements, at=socket.inet_aton(at))
        with self._lock:
            self._dump_set(family, table, name, parse, found)
        return found

    def login_sets(self, family: str, table: str) -> LoginSets:
        """The login sets' elements (authorized pairs, the two class maps, the blocked MACs)
        as the tick's reconcile compares them: one dump a set, no cache, no JSON.

        One pass, whatever the ruleset's generation does meanwhile. Whether the look can be
        trusted is the engine's to say: it is the only writer of these sets, and its own
        generation, bumped around every change under its lock, is compared before and after
        the tick's read (a login meanwhile: no reconcile from this look; the next tick
        looks). The kernel's generation moves with any transaction in the namespace —
        dnsmasq adding a walled-garden address (``nftset=``), a policy — which touch none of
        these sets. Reading again until all four dumps saw one generation, then listing the
        whole table through libnftables, cost a tick at 10,000 clients seconds of the
        interpreter while logins came (bench/README.md, "The look that read again")."""
        names = (ruleset.AUTHORIZED, ruleset.DOWN_CLASS, ruleset.UP_CLASS, ruleset.BLOCKED)
        found: dict[str, list[tuple[bytes, bytes | None]]] = {}
        with self._lock:
            for name in names:
                self._dump_set(family, table, name, element_values, found.setdefault(name, []))
        return login_sets_of(found)

    def _dump_set(
        self,
        family: str,
        table: str,
        name: str,
        parse: Callable[[bytes, int, int], list[_T]],
        into: list[_T],
    ) -> set[int]:
        """Dump one set's elements into ``into``, each message's body (after its nfgenmsg)
        read by ``parse``; the generations its messages carried (-1 for a dump the ruleset
        changed under). The caller holds the lock."""
        seq = self._seqs(1)
        payload = _attr(NFTA_SET_ELEM_LIST_TABLE, _string(table)) + _attr(
            NFTA_SET_ELEM_LIST_SET, _string(name)
        )
        request = _message(
            NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, seq, FAMILIES[family], payload
        )
        generations: set[int] = set()
        with self._exchange() as sock:
            sock.send(request)
            while True:
                data = recv_queued(sock, RECV_BUFFER)
                for kind, flags, msg_seq, start, end in messages(data):
                    if msg_seq != seq:
                        continue  # a late answer to an abandoned request
                    if flags & NLM_F_DUMP_INTR:
                        generations.add(-1)
                    if kind == NLMSG_DONE:
                        return generations
                    if kind == NLMSG_ERROR:
                        code = error_code(data, start)
                        raise NftNetlinkError(code, f"nf_tables list: {os.strerror(code)}")
                    generations.add(_NFGENMSG.unpack_from(data, start)[2])
                    into.extend(parse(data, start + _NFGENMSG.size, end))

    def _reset(self) -> None:
        """A socket whose answers may still come is not reused (they would be read as the
        next request's)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._reset()
