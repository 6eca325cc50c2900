"""A login's HTB class change as one rtnetlink message of our own (gateway/rtnl_dump.py),
against the real kernel: for each tier's rates, the class it makes reads back exactly as the
one pyroute2 made before (rate, ceiling, bursts, quantum, link layer), a change of rate is
applied in place, 64-bit rates go in their own attributes, a kick's removal takes the class
and its qdisc, removing it twice is ENOENT, and a class for a device that is gone is
refused with nothing made."""

from __future__ import annotations

import os

from tests.netns.gateway.test_ctnetlink_kernel import run_in_namespace

SCRIPT = """
import errno, json, subprocess
from pyroute2 import IPRoute
from gateway import rtnl_dump, shaping

def tc(*args):
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=True).stdout

subprocess.run(["ip", "link", "add", "hs0", "up", "type", "veth", "peer", "name", "hs1"],
               check=True)
tc("qdisc", "add", "dev", "hs0", "root", "handle", "1:", "htb", "default", "2")
tc("class", "add", "dev", "hs0", "parent", "1:", "classid", "1:1", "htb", "rate", "100mbit")
ipr = IPRoute()
index = ipr.link_lookup(ifname="hs0")[0]

def classes():
    # each class's parameters as the kernel dumps them, and tc's line for it
    # (iproute2 6.1 has no JSON for HTB classes)
    found = {}
    for msg in ipr.get_classes(index=index):
        options = msg.get_attr("TCA_OPTIONS")
        parms = options.get_attr("TCA_HTB_PARMS")
        found[f"1:{msg['handle'] & 0xFFFF:x}"] = {
            k: v for k, v in parms.items() if not k.startswith(("rate_", "ceil_"))
            or k.endswith(("overhead", "mpu", "cell_log", "reserved"))
        } | {"rate64": options.get_attr("TCA_HTB_RATE64")}
    for line in tc("-d", "class", "show", "dev", "hs0").splitlines():
        words = line.split()
        if len(words) > 2 and words[2] in found:
            found[words[2]]["line"] = " ".join(words[3:])
    return found

def pyroute2_class(minor, rate_kbps, ceil_kbps):
    ipr.tc("replace-class", "htb", index=index, handle=0x10000 | minor, parent=0x10001,
           rate=f"{rate_kbps}kbit", ceil=f"{ceil_kbps}kbit",
           burst=shaping.burst_bytes(rate_kbps), cburst=shaping.burst_bytes(ceil_kbps),
           quantum=shaping.MTU_QUANTUM)

def our_class(minor, rate_kbps, ceil_kbps):
    rtnl_dump.put_htb_class(rtnl_dump.htb_class_body(
        index, 0x10000 | minor, 0x10001,
        rate_bytes=rate_kbps * 1000 // 8, ceil_bytes=ceil_kbps * 1000 // 8,
        burst=shaping.burst_bytes(rate_kbps), cburst=shaping.burst_bytes(ceil_kbps),
        quantum=shaping.MTU_QUANTUM))

out = {"same": [], "differ": []}
for i, (rate, ceil) in enumerate([(8, 512), (8, 1000), (8, 2000), (8, 5000), (8, 20000),
                                   (1000, 1000), (8, 100000), (8, 333)]):
    pyroute2_class(0x100 + i, rate, ceil)
    our_class(0x200 + i, rate, ceil)
    got = classes()
    theirs, ours = got[f"1:{0x100 + i:x}"], got[f"1:{0x200 + i:x}"]
    (out["same"] if theirs == ours else out["differ"]).append([rate, ceil, theirs, ours])

# A change in place: the same class, another ceiling (a top-up to a faster package).
our_class(0x300, 8, 1000)
tc("qdisc", "add", "dev", "hs0", "parent", "1:300", "handle", "300:", "pfifo")
our_class(0x300, 8, 5000)
out["changed_ceil"] = classes()["1:300"]["ceil"]
out["leaf_kept"] = "300:" in tc("qdisc", "show", "dev", "hs0")

# Above 4 Gbyte/s the rate is a 64-bit attribute.
rtnl_dump.put_htb_class(rtnl_dump.htb_class_body(
    index, 0x10400, 0x10001, rate_bytes=5 * 10**9, ceil_bytes=5 * 10**9,
    burst=1600, cburst=1600, quantum=1514))
out["rate64"] = classes()["1:400"]["rate64"]

# A kick: the class and its leaf go; a second removal is ENOENT.
rtnl_dump.delete_class(index, 0x10300, 0x10001)
out["after_delete"] = "1:300" in classes()
out["leaf_after_delete"] = "300:" in tc("qdisc", "show", "dev", "hs0")
try:
    rtnl_dump.delete_class(index, 0x10300, 0x10001)
    out["second_delete"] = "ok"
except OSError as exc:
    out["second_delete"] = errno.errorcode.get(exc.errno)

# A device gone (an interface renamed under the gateway): refused, nothing made.
before = sorted(classes())
try:
    rtnl_dump.put_htb_class(rtnl_dump.htb_class_body(
        index + 1000, 0x10500, 0x10001, rate_bytes=1000, ceil_bytes=1000,
        burst=1600, cburst=1600, quantum=1514))
    out["bad_parent"] = "ok"
except OSError as exc:
    out["bad_parent"] = errno.errorcode.get(exc.errno)
out["unchanged"] = sorted(classes()) == before
print(json.dumps(out))
"""


def test_our_class_message_makes_what_pyroute2_made():
    result = run_in_namespace(f"hshtb{os.getpid() % 1000}-", "", SCRIPT)
    assert result["differ"] == [], result["differ"]
    assert len(result["same"]) == 8
    assert result["changed_ceil"] == 5_000_000 // 8
    assert result["leaf_kept"] is True  # a replace changes the class, keeps its qdisc
    assert result["rate64"] == 5 * 10**9
    assert result["after_delete"] is False and result["leaf_after_delete"] is False
    assert result["second_delete"] == "ENOENT"
    assert result["bad_parent"] == "ENODEV"
    assert result["unchanged"] is True
