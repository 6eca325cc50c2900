"""The bench's phones share one namespace; a packet the kernel sends with no socket must
still leave from the phone whose address it carries (``bench.phones.Configurer``).

A TCP reset for a connection already gone is routed by the routing tables alone. With one
main table for every phone it left by the route of the lowest metric: another phone's
interface and MAC with this phone's address. The gateway's portal_peers then saw two
devices at one address, and its ``not-your-session`` check refused the phone (the one
refusal per run of the 45-minute and two-hour soaks). ``source_tables=True`` (the soak's)
gives each phone a table chosen by its source address, as its own stack would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.testbed import run_prefix

REPO = Path(__file__).resolve().parents[3]
GW = "10.9.0.1"
PHONES = ("10.9.0.10", "10.9.0.11")
MACS = ("02:cc:00:00:00:00", "02:cc:00:00:00:01")
# Seen by the "gateway": who sent a reset from which address (as its portal_peers set does).
PEERS = """table inet t {
  set peers { type ipv4_addr . ether_addr; flags dynamic; }
  chain in { type filter hook input priority 0;
    tcp flags & rst == rst update @peers { ip saddr . ether saddr }; }
}
"""
# The phones' addresses put on as bench.soak and bench.phones put them (in the namespace).
CONFIGURE = """
import sys
from bench.phones import Configurer, Lease
conf = Configurer(source_tables=sys.argv[1] == "1")
for i, ip in enumerate(sys.argv[2:]):
    conf.configure(f"m{i}", i, Lease(ip, "10.9.0.1", "10.9.0.1", 24, 3600, ""))
"""


def sh(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, check=True, timeout=60
    ).stdout


@pytest.fixture
def village() -> Iterator[tuple[str, str]]:
    prefix = run_prefix("hpr")
    phones, gw = f"{prefix}-phones", f"{prefix}-gw"
    try:
        sh("ip", "netns", "add", phones)
        sh("ip", "netns", "add", gw)
        sh("ip", "link", "add", "v0", "netns", phones, "type", "veth", "peer", "v1", "netns", gw)
        sh("ip", "-n", gw, "addr", "add", f"{GW}/24", "dev", "v1")
        sh("ip", "-n", gw, "link", "set", "v1", "up")
        sh("ip", "-n", phones, "link", "set", "v0", "up")
        sh(
            "ip", "netns", "exec", phones, "sysctl", "-qw",
            "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.all.rp_filter=0",
        )  # fmt: skip
        for i, mac in enumerate(MACS):
            sh("ip", "-n", phones, "link", "add", f"m{i}", "link", "v0", "address", mac,
               "type", "macvlan", "mode", "bridge")  # fmt: skip
            sh("ip", "-n", phones, "link", "set", f"m{i}", "up")
        sh("ip", "netns", "exec", gw, "nft", "-f", "-", stdin=PEERS)
        yield phones, gw
    finally:
        for ns in (phones, gw):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def reset_sender(phones: str, gw: str, source_tables: bool) -> str:
    """The MAC the gateway sees on the reset phone 1's address sends to a closed port."""
    subprocess.run(
        ["ip", "netns", "exec", phones, sys.executable, "-c", CONFIGURE]
        + ["1" if source_tables else "0", *PHONES],
        cwd=REPO,
        check=True,
        timeout=60,
    )
    # Phone 1 talks first (its neighbour entry at the gateway), then the gateway connects to
    # a port phone 1 has no socket on: the reply is the kernel's reset.
    sh("ip", "netns", "exec", phones, "ping", "-c1", "-W2", "-I", "m1", GW)
    refused = subprocess.run(
        ["ip", "netns", "exec", gw, sys.executable, "-c"]
        + [f"import socket; socket.create_connection(('{PHONES[1]}', 9), timeout=2)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert "ConnectionRefusedError" in refused.stderr, refused.stderr
    listing = sh("ip", "netns", "exec", gw, "nft", "list", "set", "inet", "t", "peers")
    seen = [line for line in listing.splitlines() if "elements" in line]
    assert seen, listing
    return seen[0]


def test_without_source_tables_a_kernel_reset_leaves_with_another_phones_mac(village):
    """The artefact, kept shown: the reason the soak's phones have tables of their own."""
    assert f"{PHONES[1]} . {MACS[0]}" in reset_sender(*village, source_tables=False)


def test_with_source_tables_a_kernel_reset_leaves_from_its_own_phone(village):
    assert f"{PHONES[1]} . {MACS[1]}" in reset_sender(*village, source_tables=True)
