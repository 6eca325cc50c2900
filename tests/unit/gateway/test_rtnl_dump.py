"""The struct parser of tc dumps, on hand-made netlink messages."""

from __future__ import annotations

import socket
import struct

import pytest

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


# -- the tick's lean reader (htb_counters / parse_htb_buffer) ------------------------------

# A real class dump (kernel 6.18, `bench`-style veth, two client classes with tbf leaves, 1:2
# having passed 7 datagrams of 142 bytes), as two recv() buffers: the classes, then DONE.
CAPTURED_SEQ = 5899047
CAPTURED_IFINDEX = 3
CAPTURED = bytes.fromhex(
    "ec0000002800020027035a002b6bad8f0000000003000000ffff0100ffffffff000000000800010068746200"
    "3400020030000100000100000000000040597307000100000000000040597307bb000000bb000000400d0300"
    "07000000000000004800070014000100e2030000000000000700000000000000180003000000000000000000"
    "00000000000000000000000018000400000000000000000000000000a9000000a90000002c000300e2030000"
    "0000000007000000000000000000000000000000000000000000000000000000000000001800040000000000"
    "0000000000000000a9000000a9000000ec0000002800020027035a002b6bad8f000000000300000002000100"
    "ffff010000000400080001006874620034000200300001000001000000000000e80300000001000000000000"
    "90d0030040787d01a0860100ea05000000000000000000004800070014000100e20300000000000007000000"
    "0000000018000300000000000000000000000000000000000000000018000400070000000000000000000000"
    "147e9000b99600002c000300e203000000000000070000000000000000000000000000000000000000000000"
    "000000000000000018000400070000000000000000000000147e9000b9960000ec0000002800020027035a00"
    "2b6bad8f000000000300000003000100ffff0100000006000800010068746200340002003000010000010000"
    "00000000e8030000000100000000000090d0030040787d01a0860100ea050000000000000000000048000700"
    "1400010000000000000000000000000000000000180003000000000000000000000000000000000000000000"
    "1800040000000000000000000000000040787d01a08601002c00030000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000001800040000000000000000000000000040787d01"
    "a08601005c0000002800020027035a002b6bad8f000000000300000001000400000004000000000008000100"
    "74626600040007002c0003000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000005c0000002800020027035a002b6bad8f0000000003000000010006000000060000000000"
    "0800010074626600040007002c00030000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000140000000300020027035a002b6bad8f00000000"
)
CAPTURED_SPLIT = 892  # the first buffer's length


def _generic(data: bytes) -> list[tuple[int, int, int, int]]:
    """The same buffer through the attribute walk of ``_parse``."""
    out = []
    offset = 0
    while offset < len(data):
        length, mtype = struct.unpack_from("=IH", data, offset)
        if mtype >= 16:
            obj = rtnl_dump._parse(data, offset + 16, offset + length)
            if obj.kind == "htb":
                out.append((obj.handle, obj.ceil_bytes_per_s, obj.bytes, obj.packets))
        offset += (length + 3) & ~3
    return out


def test_lean_reader_on_a_captured_dump_agrees_with_the_attribute_walk():
    out: list[tuple[int, int, int, int]] = []
    first, done = CAPTURED[:CAPTURED_SPLIT], CAPTURED[CAPTURED_SPLIT:]
    assert not rtnl_dump.parse_htb_buffer(first, CAPTURED_SEQ, CAPTURED_IFINDEX, out)
    assert rtnl_dump.parse_htb_buffer(done, CAPTURED_SEQ, CAPTURED_IFINDEX, out)
    assert out == _generic(first)
    by_handle = {h: (ceil, b, p) for h, ceil, b, p in out}
    # the backhaul 1:ffff and the two clients; the tbf leaves' classes are skipped
    assert set(by_handle) == {0x1FFFF, 0x10002, 0x10003}
    assert by_handle[0x10002] == (250_000, 994, 7)
    assert by_handle[0x10003] == (250_000, 0, 0)


def test_lean_reader_skips_other_devices_and_other_requests():
    out: list[tuple[int, int, int, int]] = []
    rtnl_dump.parse_htb_buffer(CAPTURED[:CAPTURED_SPLIT], CAPTURED_SEQ, 99, out)
    rtnl_dump.parse_htb_buffer(CAPTURED[:CAPTURED_SPLIT], CAPTURED_SEQ + 1, CAPTURED_IFINDEX, out)
    assert out == []


def _nl(body: bytes, seq: int = 1, mtype: int = 40) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 2, seq, 0) + body


def test_lean_reader_falls_back_to_the_walk_for_another_layout():
    # a 64-bit ceiling adds TCA_HTB_CEIL64 to the options: not the fast layout
    odd = message(
        7, 0x1002A, 0x1FFFF, "htb", ceil=0xFFFFFFFF, nbytes=5, packets=1, ceil64=6 * 10**9
    )
    plain = message(7, 0x1002B, 0x1FFFF, "htb", ceil=1000, nbytes=10**12, packets=3)
    short = message(7, 0x1002C, 0x1FFFF, "htb")[:40]  # shorter than the fast layout
    out: list[tuple[int, int, int, int]] = []
    data = _nl(odd) + _nl(plain) + _nl(short) + _nl(b"\0" * 4, mtype=rtnl_dump.NLMSG_DONE)
    assert rtnl_dump.parse_htb_buffer(data, 1, 7, out)
    assert out[:2] == [(0x1002A, 6 * 10**9, 5, 1), (0x1002B, 1000, 10**12, 3)]


def test_lean_reader_refuses_a_truncated_or_lying_message():
    data = _nl(message(7, 0x1002A, 0x1FFFF, "htb"))
    with pytest.raises(rtnl_dump.DumpError):
        rtnl_dump.parse_htb_buffer(data[:-8], 1, 7, [])  # its length says more than is there
    with pytest.raises(rtnl_dump.DumpError):
        rtnl_dump.parse_htb_buffer(struct.pack("=IHHII", 8, 40, 0, 1, 0), 1, 7, [])


def test_lean_reader_raises_the_kernels_error():
    err = _nl(struct.pack("=i", -19) + b"\0" * 16, mtype=rtnl_dump.NLMSG_ERROR)
    with pytest.raises(rtnl_dump.DumpError) as caught:
        rtnl_dump.parse_htb_buffer(err, 1, 7, [])
    assert caught.value.errno == 19


# -- the tick's read of its sessions' classes (htb_classes: a request a class, batched) -----


def _error(code: int, seq: int) -> bytes:
    return _nl(struct.pack("=i", -code if code else 0) + b"\0" * 16, seq=seq, mtype=2)


def test_batched_answers_end_at_the_last_requests_acknowledgement():
    """Answers in order: a class, an ENOENT for one that does not exist (left out, not an
    error), another class, then the last request's acknowledgement: the batch's end."""
    out: list[tuple[int, int, int, int]] = []
    seqs = range(10, 13)
    data = (
        _nl(message(7, 0x1000A, 0x1FFFF, "htb", ceil=1000, nbytes=5, packets=1), seq=10)
        + _error(2, seq=11)  # ENOENT: 1:b does not exist
        + _nl(message(7, 0x1000C, 0x1FFFF, "htb", ceil=2000, nbytes=9, packets=2), seq=12)
    )
    assert rtnl_dump._parse_htb_messages(data, seqs, 7, out, end_seq=12) == (False, 1)
    assert rtnl_dump._parse_htb_messages(_error(0, seq=12), seqs, 7, out, end_seq=12)[0]
    assert out == [(0x1000A, 1000, 5, 1), (0x1000C, 2000, 9, 2)]
    # the last class missing: its ENOENT is the end too
    assert rtnl_dump._parse_htb_messages(_error(2, seq=12), seqs, 7, [], end_seq=12)[0]
    # an answer to another request (an earlier batch's, another socket's) is not ours
    stray = _nl(message(7, 0x1000D, 0x1FFFF, "htb", ceil=1, nbytes=1, packets=1), seq=99)
    assert rtnl_dump._parse_htb_messages(stray, seqs, 7, out, end_seq=12) == (False, 0)
    assert len(out) == 2


def test_batched_read_raises_any_other_error():
    with pytest.raises(rtnl_dump.DumpError) as caught:
        rtnl_dump._parse_htb_messages(_error(1, seq=11), range(10, 13), 7, [], end_seq=12)
    assert caught.value.errno == 1  # EPERM: not a class that does not exist
    with pytest.raises(rtnl_dump.DumpError):  # a dump's ENOENT stays an error
        rtnl_dump.parse_htb_buffer(_error(2, seq=1), 1, 7, [])
