"""Qdisc handles: every qdisc the gateway makes has an explicit handle whose major the
kernel never hands out on its own (0x0001-0x7fff), and the reconcile replaces leaves that
have other handles (a tree an older gateway left). The kernel side is in
tests/netns/test_qdisc_handles.py."""

from __future__ import annotations

import ipaddress
import re
import struct

import pytest

from gateway import rtnl_dump, shaping
from gateway.reconcile import Snapshot, Wanted, plan
from gateway.tc import TC_H_ROOT, Shaper

NET = ipaddress.IPv4Network("10.10.0.0/22")
KERNEL_AUTO_MAJORS = range(0x8000, 0x10000)


def majors_of_every_host() -> list[int]:
    out = [shaping.ROOT_HANDLE >> 16]
    out += [h >> 16 for h in shaping.DEFAULT_LEAF_HANDLES.values()]
    for minor in range(1, shaping.MAX_HOST_INDEX + 1):
        out += [shaping.splitter_handle(minor) >> 16, shaping.splitter_child_handle(minor) >> 16]
    return out


def test_every_handle_of_a_full_slash18_is_distinct_and_outside_the_kernels_range():
    majors = majors_of_every_host()
    assert len(set(majors)) == len(majors)
    assert all(1 <= m <= 0x7FFF for m in majors)
    assert not set(majors) & set(KERNEL_AUTO_MAJORS)


def test_client_leaf_handles_follow_the_host_index():
    minor = shaping.client_minor("10.10.0.42", NET)
    assert shaping.splitter_handle(minor) == 0x54 << 16
    assert shaping.splitter_child_handle(minor) == 0x55 << 16


@pytest.mark.parametrize("minor", [0, shaping.MAX_HOST_INDEX + 1, 0x7FFE])
def test_host_index_without_handles_is_refused(minor):
    with pytest.raises(ValueError):
        shaping.splitter_handle(minor)


def test_a_slash18_is_the_largest_shapeable_lan():
    assert shaping.shapeable(ipaddress.IPv4Network("10.10.0.0/18"))
    assert shaping.shapeable(NET)
    assert not shaping.shapeable(ipaddress.IPv4Network("10.10.0.0/17"))
    last = ipaddress.IPv4Network("10.10.0.0/18").broadcast_address - 1
    assert (
        shaping.client_minor(last, ipaddress.IPv4Network("10.10.0.0/18")) == shaping.MAX_HOST_INDEX
    )


@pytest.mark.parametrize("leaf", ["pfifo", "fq_codel"])
def test_batch_gives_every_qdisc_a_handle(leaf):
    shaper = Shaper(ipr=None, ifname="br-lan", skeleton=[], leaf=leaf)
    lines = shaper._batch_lines([(0x2A, 5000, True), (0x2B, 5000, False)], [0x2C])
    qdisc_lines = [ln for ln in lines if ln.startswith("qdisc ")]
    assert len(qdisc_lines) == (2 if leaf == "fq_codel" else 1)
    for line in qdisc_lines:
        major = int(re.search(r" handle ([0-9a-f]+): ", line).group(1), 16)
        assert 1 <= major <= 0x7FFF, line
    assert "parent 1:2a handle 54: tbf" in qdisc_lines[0]
    if leaf == "fq_codel":
        assert "parent 54:1 handle 55: fq_codel" in qdisc_lines[1]


class FakeIPRoute:
    """Records ``tc`` calls (the netlink path of a few changes)."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []

    def tc(self, command, kind=None, **kwargs):
        self.calls.append((command, kind, kwargs))


@pytest.mark.parametrize("leaf", ["pfifo", "fq_codel"])
def test_netlink_path_gives_every_qdisc_a_handle(leaf, monkeypatch):
    classes = []  # the class itself is our own message (tests/netns: test_htb_class_message)
    monkeypatch.setattr(rtnl_dump, "put_htb_class", classes.append)
    ipr = FakeIPRoute()
    shaper = Shaper(ipr=ipr, ifname="br-lan", skeleton=[], leaf=leaf)
    shaper._index = 7
    shaper.set_client(0x2A, 5000, with_leaf=True)
    shaper._put_default_leaf()
    qdiscs = [(kind, kw) for command, kind, kw in ipr.calls if command == "replace"]
    assert [kind for kind, _ in qdiscs] == (
        ["tbf", "fq_codel", "fq_codel"] if leaf == "fq_codel" else ["tbf", "pfifo"]
    )
    for kind, kw in qdiscs:
        assert kw.get("handle") and 1 <= kw["handle"] >> 16 <= 0x7FFF, (kind, kw)
        assert kw["handle"] & 0xFFFF == 0
    assert qdiscs[-1][1]["handle"] == shaping.DEFAULT_LEAF_HANDLES[leaf]
    # (tcmsg: family, ifindex, handle, parent, info)
    assert [rtnl_dump._TCMSG.unpack_from(body)[1:3] for body in classes] == [
        (7, shaping.classid(0x2A))
    ]


def qdisc(handle: int, parent: int, kind: str) -> rtnl_dump.TcObject:
    return rtnl_dump.TcObject(7, kind, handle, parent, 0, 0, 0)


def shaper_over(qdiscs: list[rtnl_dump.TcObject], leaf: str) -> Shaper:
    shaper = Shaper(ipr=None, ifname="br-lan", skeleton=[], leaf=leaf)
    shaper._dump = lambda what=None: qdiscs  # one device's qdisc dump
    return shaper


def ours(minor: int, leaf: str) -> list[rtnl_dump.TcObject]:
    tbf = shaping.splitter_handle(minor)
    out = [qdisc(tbf, shaping.classid(minor), "tbf")]
    if leaf == "fq_codel":
        out.append(qdisc(shaping.splitter_child_handle(minor), tbf | 1, "fq_codel"))
    else:
        out.append(qdisc(0, tbf | 1, "bfifo"))  # tbf's own FIFO
    return out


@pytest.mark.parametrize("leaf", ["pfifo", "fq_codel"])
def test_stale_leaves_are_those_an_older_gateway_made(leaf):
    root = [
        qdisc(shaping.ROOT_HANDLE, TC_H_ROOT, "htb"),
        qdisc(0x8003 << 16, shaping.classid(shaping.DEFAULT_MINOR), "pfifo"),
    ]
    old_tbf = (0x8000 + 0x0C) << 16  # the old code's handle for host index 0x0c
    old = [qdisc(old_tbf, shaping.classid(0x0C), "tbf"), qdisc(0x8004 << 16, old_tbf | 1, leaf)]
    missing = [qdisc(0, shaping.classid(0x0D), "pfifo")]  # HTB's own default leaf
    shaper = shaper_over(root + ours(0x0B, leaf) + old + missing, leaf)
    assert shaper.stale_leaves([0x0B, 0x0C, 0x0D]) == {0x0C, 0x0D}


def test_a_switch_to_fq_codel_makes_leaves_stale():
    shaper = shaper_over(ours(0x0B, "pfifo"), "fq_codel")
    assert shaper.stale_leaves([0x0B]) == {0x0B}


def test_reconcile_remakes_stale_leaves_of_existing_classes_only():
    wanted = [
        Wanted("10.10.0.11", "02:00:00:00:00:01", 1024, 512),
        Wanted("10.10.0.12", "02:00:00:00:00:02", 5120, 2048),
        Wanted("10.10.0.13", "02:00:00:00:00:03", 5120, 2048),
    ]
    snap = Snapshot(
        authorized={(w.ip, w.mac) for w in wanted},
        down_map={w.ip: f"1:{int(w.ip.rsplit('.', 1)[1]):x}" for w in wanted},
        up_map={w.ip: f"1:{int(w.ip.rsplit('.', 1)[1]):x}" for w in wanted},
        down_ceil={11: 1024, 12: 5120, 50: 1024},
        up_ceil={11: 512, 12: 2048},
        down_stale_leaves={12, 50},
        up_stale_leaves={11},
    )
    p = plan(wanted, set(), snap, NET)
    assert [(c.minor, c.kbps, c.new, c.remake_leaf, c.needs_leaf) for c in p.down_set] == [
        (12, 5120, False, True, True),
        (13, 5120, True, False, True),
    ]
    assert [(c.minor, c.new, c.remake_leaf) for c in p.up_set] == [
        (11, False, True),
        (13, True, False),
    ]
    assert p.down_del == [50]  # a stranger's class goes, stale leaves or not
    done = Snapshot(
        authorized=snap.authorized,
        down_map=snap.down_map,
        up_map=snap.up_map,
        down_ceil={11: 1024, 12: 5120, 13: 5120},
        up_ceil={11: 512, 12: 2048, 13: 2048},
    )
    assert plan(wanted, set(), done, NET).empty


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * ((4 - len(raw) % 4) % 4)


def test_qdisc_options_are_not_read_as_an_htb_ceiling():
    # tbf's options number its parameters 1, like HTB's: the same bytes, another meaning
    parms = struct.pack("=12x8xI", 1_250_000_000) + b"\0" * 20
    data = struct.pack("=BxxxiIII", 0, 7, 0x540000, 0x1002A, 0)
    data += attr(rtnl_dump.TCA_KIND, b"tbf\0") + attr(rtnl_dump.TCA_OPTIONS, attr(1, parms))
    obj = rtnl_dump._parse(data, 0, len(data))
    assert obj.kind == "tbf" and obj.ceil_bytes_per_s == 0
