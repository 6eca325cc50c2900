"""The struct parser of tc dumps, on hand-made netlink messages."""

from __future__ import annotations

import socket
import struct

from gateway import rtnl_dump


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * ((4 - len(raw) % 4) % 4)


def message(
    ifindex: int,
    handle: int,
    parent: int,
    kind: str,
    ceil: int = 0,
    nbytes: int = 0,
    packets: int = 0,
    ceil64: int | None = None,
) -> bytes:
    body = struct.pack("=BxxxiIII", 0, ifindex, handle, parent, 0)
    body += attr(rtnl_dump.TCA_KIND, kind.encode() + b"\0")
    htb = struct.pack("=12x8xI", ceil) + b"\0" * 20
    opts = attr(rtnl_dump.TCA_HTB_PARMS, htb)
    if ceil64 is not None:
        opts += attr(rtnl_dump.TCA_HTB_CEIL64, struct.pack("=Q", ceil64))
    body += attr(rtnl_dump.TCA_OPTIONS, opts)
    body += attr(
        rtnl_dump.TCA_STATS2, attr(rtnl_dump.TCA_STATS_BASIC, struct.pack("=QI4x", nbytes, packets))
    )
    return body


def test_parse_htb_class():
    data = message(7, 0x1002A, 0x1FFFF, "htb", ceil=128_000, nbytes=10**12, packets=42)
    obj = rtnl_dump._parse(data, 0, len(data))
    assert obj == rtnl_dump.TcObject(7, "htb", 0x1002A, 0x1FFFF, 128_000, 10**12, 42)


def test_parse_prefers_ceil64_and_skips_unknown_attributes():
    data = message(7, 0x10001, 0x1FFFF, "htb", ceil=0xFFFFFFFF, ceil64=5 * 10**9)
    data += attr(99, b"ignored!")
    obj = rtnl_dump._parse(data, 0, len(data))
    assert obj.ceil_bytes_per_s == 5 * 10**9 and obj.kind == "htb"


def test_truncated_attribute_does_not_loop():
    data = message(7, 0x10001, 0x1FFFF, "htb") + struct.pack("=HH", 2, 1)
    assert rtnl_dump._parse(data, 0, len(data)).handle == 0x10001


def test_a_pin_is_one_newneigh_with_the_address_and_the_mac():
    # what `ip neigh replace 10.10.0.5 lladdr 02:00:00:00:00:05 nud permanent dev <7>` sends
    body = rtnl_dump._neighbour_body(7, "10.10.0.5", 0x80, bytes.fromhex("020000000005"))
    assert body == (
        struct.pack("=BxxxiHBB", socket.AF_INET, 7, 0x80, 0, 0)
        + struct.pack("=HH", 8, rtnl_dump.NDA_DST)
        + socket.inet_aton("10.10.0.5")
        + struct.pack("=HH", 10, rtnl_dump.NDA_LLADDR)
        + bytes.fromhex("020000000005")
        + bytes(2)
    )
    # a lookup or an unpin names the address alone
    assert rtnl_dump._neighbour_body(7, "10.10.0.5") == (
        struct.pack("=BxxxiHBB", socket.AF_INET, 7, 0, 0, 0) + body[12:20]
    )
