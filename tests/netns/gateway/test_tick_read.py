"""The tick's lean class reader (gateway/rtnl_dump.py ``htb_counters``, issue #12 item 4)
against the real kernel: with real traffic through two logged-in phones, what it reads of
every HTB class (the pool's, the backhaul, the default) on both devices is what
``tc -s class show`` reports, bytes and packets, and the ceilings are the classes'; asked
for the HTB root's classes only (the tick's dump: no leaf's classes made), the same.
"""

from __future__ import annotations

import errno
import json
import re
import sys

from tests.netns.helpers import authorize, client_minor, send_udp, tc_classes, tier, wait_until

DEVICES = ("br-lan", "eth0")  # download on the bridge, upload on the uplink

_READ = """
import json, socket, sys
from gateway import rtnl_dump
out = {}
for dev in sys.argv[1:]:
    index = socket.if_nametoindex(dev)
    rows = rtnl_dump.htb_counters(index)
    out[dev] = {str(h): [ceil, b, p] for h, ceil, b, p in rows}
    # the tick's: the HTB root's classes only, asked of the kernel (tcm_parent 1:)
    root = rtnl_dump.htb_counters(index, 0x10000)
    out[dev + " root"] = {str(h): [ceil, b, p] for h, ceil, b, p in root}
print(json.dumps(out))
"""


_CLASS = re.compile(r"^class htb ([0-9a-f]+):([0-9a-f]+) ")
_SENT = re.compile(r"^Sent (\d+) bytes (\d+) pkt")


def _tc_counters(bed, dev: str) -> dict[int, tuple[int, int]]:
    """handle → (bytes, packets) of every HTB class of ``dev``, as ``tc -s`` prints them
    (Debian 12's tc has no JSON for classes)."""
    out = {}
    handle = None
    for line in bed.run(bed.gw, "tc", "-s", "class", "show", "dev", dev).stdout.splitlines():
        line = line.strip()
        if m := _CLASS.match(line):
            handle = int(m.group(1), 16) << 16 | int(m.group(2), 16)
        elif line.startswith("class "):
            handle = None  # a tbf leaf's own class
        elif handle is not None and (m := _SENT.match(line)):
            out[handle] = (int(m.group(1)), int(m.group(2)))
    return out


def _traffic_through_two_phones(bed, gw, count: int) -> list[int]:
    """Two phones logged in send ``count`` datagrams each, both ways (the phone's upload,
    the upstream's answer: ICMP); returns their class minors once the traffic has left the
    queues (the phones' counters stop moving between two reads, on both devices; the LAN's
    own chatter may go on in the default class)."""
    phones = bed.phones[:2]
    for phone in phones:
        authorize(gw, phone)
    for phone in phones:
        send_udp(bed, phone.ns, "198.51.100.10", 9, "x" * 600, count=count)
    minors = [client_minor(p.ip) for p in phones]
    last: list[dict[str, dict[int, tuple[int, int]]]] = []

    def settled() -> bool:
        now = {dev: _tc_counters(bed, dev) for dev in DEVICES}
        last.append(now)
        counted = {dev: [now[dev][0x10000 | m] for m in minors] for dev in DEVICES}
        return (
            len(last) > 1
            and all(
                p == last[-2][dev][0x10000 | m]
                for dev in DEVICES
                for m, p in zip(minors, counted[dev], strict=True)
            )
            and all(p[1] for p in counted["eth0"])
        )

    wait_until(settled, timeout=10, interval=0.2)
    return minors


def test_lean_reader_agrees_with_tc_under_real_traffic(testbed, gateway_factory, upstream):
    gw = gateway_factory({"tiers": {"free": tier(1024, 512), "premium": tier(4096, 2048)}})
    minors = _traffic_through_two_phones(testbed, gw, count=40)
    # tc before and after ours: a class the LAN still feeds (the bridge's default class gets
    # a neighbour's solicitation now and then) may grow while it is read, never shrink
    before = {dev: _tc_counters(testbed, dev) for dev in DEVICES}
    got = json.loads(
        testbed.run(testbed.gw, sys.executable, "-c", _READ, *DEVICES).stdout  # cwd: the tree
    )
    after = {dev: _tc_counters(testbed, dev) for dev in DEVICES}
    for dev in DEVICES:
        # the root's classes are every HTB class (read a moment later: counters only grow)
        root, every = got[dev + " root"], got[dev]
        assert root.keys() == every.keys(), dev
        for h, (ceil, b, p) in every.items():
            assert root[h][0] == ceil and root[h][1] >= b and root[h][2] >= p, (dev, h)
        ours = {int(h): tuple(v) for h, v in got[dev].items()}
        assert ours.keys() == before[dev].keys() == after[dev].keys(), dev
        for h, (_c, b, p) in ours.items():
            low, high = before[dev][h], after[dev][h]
            assert low[0] <= b <= high[0] and low[1] <= p <= high[1], (dev, hex(h), low, high)
        # the phones' classes have settled: read exactly what tc reads
        for m in minors:
            h = 0x10000 | m
            assert (ours[h][1], ours[h][2]) == before[dev][h] == after[dev][h], (dev, hex(h))
        ceilings = tc_classes(testbed, dev)
        for h, (ceil, _b, _p) in ours.items():
            if h >> 16 == 1 and (h & 0xFFFF) in ceilings:
                assert abs(ceil * 8 - ceilings[h & 0xFFFF].ceil_bps) <= ceil * 8 // 100, (
                    dev,
                    hex(h),
                )
    upload = {int(h): v for h, v in got["eth0"].items()}
    for m in minors:
        assert upload[0x10000 | m][1] >= 40, "every datagram of each phone counted in its class"


_ASK = """
import json, socket, sys
from gateway import rtnl_dump
dev, handles = sys.argv[1], [int(h) for h in sys.argv[2:]]
index = socket.if_nametoindex(dev)
out = {"dump": {str(h): [c, b, p] for h, c, b, p in rtnl_dump.htb_counters(index, 0x10000)}}
for chunk in (1, 7, 128):
    rows = rtnl_dump.htb_classes(index, handles, chunk=chunk)
    out[str(chunk)] = [[h, c, b, p] for h, c, b, p in rows]
try:
    rtnl_dump.htb_classes(4242, handles[:3])  # no such device
except OSError as exc:
    out["no_device"] = exc.errno
print(json.dumps(out))
"""


def test_classes_asked_for_are_the_dumps_under_real_traffic(testbed, gateway_factory, upstream):
    """The tick's read of its sessions' classes alone (``rtnl_dump.htb_classes``: one
    request a class, batched): what it gives of the phones' classes and of idle pool
    classes is what the whole dump gives; a class that does not exist is left out, however
    the requests are batched; a device that does not exist is an error, not an empty read."""
    gw = gateway_factory({"tiers": {"free": tier(1024, 512)}})
    minors = _traffic_through_two_phones(testbed, gw, count=20)
    idle = [m for m in range(10, 41) if m not in minors]  # the testbed's pool: hosts 10-40
    missing = (0x3FFD, 0x3FFE)  # no client class has these minors on the testbed's /22
    # a missing class among the others, and as the last request of a batch (its end)
    handles = [0x10000 | m for m in (missing[0], *minors, *idle, missing[1])]
    got = json.loads(
        testbed.run(testbed.gw, sys.executable, "-c", _ASK, "eth0", *map(str, handles)).stdout
    )
    dump = {int(h): tuple(v) for h, v in got["dump"].items()}
    for chunk in ("1", "7", "128"):
        asked = {h: (c, b, p) for h, c, b, p in got[chunk]}
        assert asked.keys() == set(handles) - {0x10000 | m for m in missing}, chunk
        for h, row in asked.items():
            assert row == dump[h], (chunk, hex(h))
    for m in minors:
        assert dump[0x10000 | m][2] >= 20, "the phones' datagrams are in what was read"
    assert got["no_device"] == errno.ENODEV
