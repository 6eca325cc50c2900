"""Qdisc handles against the real kernel.

A qdisc created without a handle gets one from a machine-wide counter that walks the majors
0x8000-0xfffe, whatever the device or namespace (right after a boot it starts at 0x8001).
Gateways up to this fix gave each client's tbf leaf the explicit handle 0x8000 + host index
and let the kernel number the default class's leaf: when the counter sat in the pool's
range at start-up, that leaf took a client's handle and the client could never be
authorized (``tc replace tbf … Invalid argument``). Every qdisc now has an explicit handle
with a major in 0x0001-0x7fff, which the counter never reaches.

The counter is moved with a throwaway veth pair in a namespace of its own (other test runs
on the machine move it too: the tests check afterwards where it was).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.netns.helpers import (
    QdiscInfo,
    authorize,
    client_minor,
    iperf3,
    mtu_sized_frames,
    tc_classes,
    tc_qdiscs,
    tier,
)

if TYPE_CHECKING:
    from .helpers import Phone, Testbed

# The counter's range; it goes 0x8001 … 0xfffe, then 0x8000, 0x8001 … again.
AUTO_FIRST, AUTO_LAST = 0x8000, 0xFFFE
OWN_MAJORS = range(0x0001, 0x8000)
TIER_KBPS = 5000
EXTRA_CLIENTS = 7  # authorized by address: the counter may move by that many meanwhile


class AutoHandleCounter:
    """The kernel's counter of automatic qdisc handles, read and moved on a veth pair in a
    namespace of its own (``<prefix>-ctr``: the testbed's teardown removes it too)."""

    DEV = "ctr0"

    def __init__(self, bed: Testbed):
        self.bed = bed
        self.ns = f"{bed.prefix}-ctr"

    def __enter__(self) -> AutoHandleCounter:
        # (should the link fail, the testbed's teardown removes the namespace)
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        self.bed.run(
            self.ns, "ip", "link", "add", self.DEV, "up", "type", "veth", "peer", "name", "ctr1"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)

    def take(self) -> int:
        """Have the kernel number one qdisc; its major (the counter's value now)."""
        out = self.bed.run(
            self.ns,
            "tc",
            "-batch",
            "-",
            input=(
                f"qdisc add dev {self.DEV} root pfifo\nqdisc show dev {self.DEV}\n"
                f"qdisc del dev {self.DEV} root\n"
            ),
        ).stdout
        return int(re.search(r"qdisc pfifo ([0-9a-f]+): root", out).group(1), 16)

    def advance(self, steps: int) -> None:
        """Have the kernel number ``steps`` qdiscs: a replace by another kind is a new qdisc,
        so one line each (about 7,000 a second)."""
        if steps:
            lines = "".join(
                f"qdisc replace dev {self.DEV} root {('pfifo', 'bfifo')[i % 2]}\n"
                for i in range(steps)
            )
            self.bed.run(
                self.ns,
                "tc",
                "-batch",
                "-",
                timeout=120,
                input=lines + f"qdisc del dev {self.DEV} root\n",
            )

    def set_next(self, major: int) -> None:
        """Make ``major`` the next handle the kernel gives out (unless someone else takes
        one first)."""
        cycle = AUTO_LAST - AUTO_FIRST + 1

        def position(m: int) -> int:
            return (m - AUTO_FIRST - 1) % cycle  # 0x8001 is the cycle's first

        self.advance((position(major) - position(self.take()) - 1) % cycle)


def assert_own_handles_only(bed: Testbed) -> None:
    """No qdisc of the gateway's has a handle the kernel's counter also gives out (the
    kernel's own default leaves, handle 0:, are no one's)."""
    for dev in ("br-lan", "eth0"):
        stray = [q for q in tc_qdiscs(bed, dev) if q.major and q.major not in OWN_MAJORS]
        assert not stray, f"qdiscs on {dev} with handles the kernel also hands out: {stray}"


def leaf_of(bed: Testbed, dev: str, minor: int) -> QdiscInfo:
    return next(q for q in tc_qdiscs(bed, dev) if q.parent == f"1:{minor:x}")


def shaped_at_the_tier(bed: Testbed, phone: Phone) -> None:
    result = iperf3(bed, phone.ns, reverse=True, seconds=3, omit=1)
    expected = TIER_KBPS * 1000
    print(
        f"\nHANDLES download {result.wire_bps / 1e6:.3f} Mbit/s on the wire "
        f"({result.wire_bps / expected:.1%} of the tier)"
    )
    assert abs(result.wire_bps - expected) <= 0.10 * expected, result.wire_bps


def start_with_the_counter_in_the_pool(
    bed: Testbed, gateway_factory, target: int, last: int, attempts: int = 3
):
    """Start the gateway while the kernel's next automatic handle is ``target``; check
    afterwards that every handle given out meanwhile (to the gateway or to anyone else)
    was in ``target``…``last``, and try again if not."""
    overrides = {"tiers": {"rated": tier(TIER_KBPS)}}
    with AutoHandleCounter(bed) as counter:
        for attempt in range(1, attempts + 1):
            counter.set_next(target)
            gw = gateway_factory(overrides)
            after = counter.take()
            if target <= after <= last + 1:
                print(
                    f"\nHANDLES next automatic handle {target:#x} before start-up, "
                    f"{after:#x} after (attempt {attempt})"
                )
                return gw
            gw.stop()
            for dev in ("br-lan", "eth0"):
                bed.run(bed.gw, "tc", "qdisc", "del", "dev", dev, "root", check=False)
    pytest.fail(
        f"other qdiscs on this machine moved the kernel's counter past {last:#x} "
        f"during every one of {attempts} start-ups"
    )


@pytest.mark.parametrize("testbed", [1], indirect=True)
def test_a_client_is_shaped_when_the_kernels_counter_sits_in_the_pool(
    testbed, upstream, gateway_factory
):
    phone = testbed.phones[0]
    first = client_minor(phone.ip)
    extra = [
        (f"02:00:00:02:00:{i:02x}", f"10.10.0.{first + i}") for i in range(1, EXTRA_CLIENTS + 1)
    ]
    # The handles the old code gave these clients' tbf leaves.
    gw = start_with_the_counter_in_the_pool(
        testbed, gateway_factory, 0x8000 + first, 0x8000 + first + EXTRA_CLIENTS
    )
    mtu_sized_frames(testbed)

    authorize(gw, phone, "rated")
    # Without these every call pays a 0.5 s ARP probe (the MAC is given anyway).
    testbed.gateway_neighbours([(ip, mac) for mac, ip in extra])
    for mac, ip in extra:
        gw.call("authorize", mac=mac, ip=ip, tier="rated", source="admin")

    minors = [first] + [client_minor(ip) for _, ip in extra]
    for dev in ("br-lan", "eth0"):
        classes = tc_classes(testbed, dev)
        assert all(classes[m].ceil_bps == TIER_KBPS * 1000 for m in minors), classes
    assert_own_handles_only(testbed)
    shaped_at_the_tier(testbed, phone)


def test_a_tree_left_by_an_older_gateway_is_brought_to_todays_handles(
    testbed, upstream, gateway_factory
):
    gw = gateway_factory({"tiers": {"rated": tier(TIER_KBPS)}})
    mtu_sized_frames(testbed)
    phone = testbed.phones[0]
    authorize(gw, phone, "rated")
    gw.kill9()
    # What the old code left: the client's tbf at 0x8000 + host index, the default class's
    # leaf numbered by the kernel.
    minor = client_minor(phone.ip)
    old = f"{0x8000 + minor:x}"
    for dev in ("br-lan", "eth0"):
        testbed.run(
            testbed.gw,
            "tc",
            "-batch",
            "-",
            input=(
                f"qdisc replace dev {dev} parent 1:{minor:x} handle {old}: tbf rate 10gbit "
                f"burst 6056 limit 193792\n"
                f"qdisc del dev {dev} parent 1:fffe\n"
                f"qdisc add dev {dev} parent 1:fffe pfifo limit 128\n"
            ),
        )
        assert f"{old}:" in testbed.run(testbed.gw, "tc", "qdisc", "show", "dev", dev).stdout

    gw.start()
    assert_own_handles_only(testbed)
    for dev in ("br-lan", "eth0"):
        assert leaf_of(testbed, dev, minor).kind == "tbf"
    changed = json.loads(gw.cli("gateway", "reconcile", "--json").stdout)["changed"]
    assert changed == "", f"a second look still found something to change: {changed}"
    shaped_at_the_tier(testbed, phone)


def test_a_leaf_replaced_by_hand_is_put_back_by_a_reconcile(testbed, gateway):
    phone = testbed.phones[0]
    authorize(gateway, phone)
    minor = client_minor(phone.ip)
    testbed.run(
        testbed.gw, "tc", "qdisc", "replace", "dev", "br-lan", "parent", f"1:{minor:x}", "pfifo"
    )

    changed = json.loads(gateway.cli("gateway", "reconcile", "--json").stdout)["changed"]
    assert re.search(r"\b1 classes set\b", changed), changed
    leaf = leaf_of(testbed, "br-lan", minor)
    assert leaf.kind == "tbf" and leaf.major in OWN_MAJORS, leaf
    assert_own_handles_only(testbed)


def test_a_lan_larger_than_a_slash18_is_refused_at_start(testbed, gateway_factory):
    gw = gateway_factory({"network": {"lan_address": "10.10.0.1/17"}}, start=False)
    with pytest.raises(
        RuntimeError,
        match=r"network\.lan_address: prefix length must be "
        r"between /18 and /30",
    ):
        gw.start()
