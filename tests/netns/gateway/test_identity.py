"""Identity on the LAN against the real kernel (issue #10, items 6 and 8): a forged ARP reply
cannot re-point a logged-in phone's neighbour entry (it is pinned), the pins follow the
sessions (kick, a move to a new address, reconcile, restart, teardown), a session's end
releases its pin to an ordinary entry that the next login reads without asking the LAN, and
a full MAC and address clone of a sleeping phone still gets out (an expected failure,
documented)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.netns.helpers import (
    GW_LAN_IP,
    UPSTREAM_IP,
    arp_requests,
    authorize,
    curl_report_command,
    is_online,
    readdress,
    wait_until,
)
from testsupport import testbed as tb
from testsupport.testbed import Phone

NOBODY_IP = "10.10.1.200"  # on the LAN, held by no phone

# Sends forged ARP (a reply to the gateway, a gratuitous reply and a gratuitous request,
# each claiming the victim's address for the attacker's MAC) for a few seconds while counting
# the IPv4 packets for the victim's address that reach the attacker. Prints that count.
_POISON = """
import sys, time
from scapy.all import ARP, IP, Ether, get_if_hwaddr, sendp
from scapy.sendrecv import AsyncSniffer
victim, gw_ip, gw_mac, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
me = get_if_hwaddr("eth0")
bcast = "ff:ff:ff:ff:ff:ff"
forged = [
    Ether(dst=gw_mac, src=me) / ARP(op=2, psrc=victim, hwsrc=me, pdst=gw_ip, hwdst=gw_mac),
    Ether(dst=bcast, src=me) / ARP(op=2, psrc=victim, hwsrc=me, pdst=victim, hwdst=bcast),
    Ether(dst=bcast, src=me) / ARP(op=1, psrc=victim, hwsrc=me, pdst=victim),
]
sniffer = AsyncSniffer(
    iface="eth0", store=True, lfilter=lambda p: IP in p and p[IP].dst == victim
)
sniffer.start()
time.sleep(0.3)
end = time.monotonic() + seconds
while time.monotonic() < end:
    sendp(forged, iface="eth0", verbose=False)
    time.sleep(0.1)
time.sleep(0.3)
sniffer.stop()
print(len(sniffer.results or []))
"""


def neighbour(bed: tb.Testbed, ip: str) -> tuple[str, list[str]] | None:
    """(MAC, NUD states) of the gateway's neighbour entry for ``ip`` on br-lan, or None."""
    out = bed.run(bed.gw, "ip", "-j", "neigh", "show", ip, "dev", "br-lan").stdout
    for entry in json.loads(out or "[]"):
        if entry.get("lladdr"):
            return entry["lladdr"], entry.get("state", [])
    return None


def pinned(bed: tb.Testbed, ip: str, mac: str) -> bool:
    return neighbour(bed, ip) == (mac, ["PERMANENT"])


def unpinned(bed: tb.Testbed, ip: str) -> bool:
    entry = neighbour(bed, ip)
    return entry is None or "PERMANENT" not in entry[1]


def poison(bed: tb.Testbed, attacker: Phone, victim: Phone, seconds: float) -> int:
    """Run the forged-ARP attack from ``attacker``; how many of the victim's packets it got."""
    gw_mac = bed.link_mac(bed.gw, "br-lan")
    out = bed.run(
        attacker.ns,
        sys.executable,
        "-c",
        _POISON,
        victim.ip,
        GW_LAN_IP,
        gw_mac,
        str(seconds),
        timeout=seconds + 30,
    )
    return int(out.stdout.strip().splitlines()[-1])


def forge_until_repointed(bed: tb.Testbed, attacker: Phone, victim: Phone, what: str) -> None:
    """Forge ARP for ``victim``'s address until the gateway's entry for it holds the
    attacker's MAC (an entry that is not pinned follows it within a few rounds)."""
    wait_until(
        lambda: (
            (poison(bed, attacker, victim, 1.5), neighbour(bed, victim.ip))[1][0] == attacker.mac
        ),
        timeout=15,
        what=f"a forged ARP re-points {what}",
    )


def test_forged_arp_cannot_steal_a_logged_in_phone(testbed, gateway):
    victim, attacker = testbed.phones[0], testbed.phones[1]
    # The attack is real: an ordinary (learned) entry follows the forged ARP.
    testbed.run(victim.ns, "ping", "-n", "-q", "-c", "1", "-W", "1", GW_LAN_IP)
    assert neighbour(testbed, victim.ip)[0] == victim.mac
    forge_until_repointed(testbed, attacker, victim, "an unpinned entry")

    authorize(gateway, victim)
    assert pinned(testbed, victim.ip, victim.mac)
    assert is_online(testbed, victim.ns)

    # A download (the premium tier: 5 Mbit/s, about 2.4 MB in 4 s) runs for 4 s while the
    # attacker forges ARP for 2.5 s; a stolen entry would stall it at once.
    download = subprocess.Popen(
        testbed.ns_exec(victim.ns)
        + curl_report_command(f"http://{UPSTREAM_IP}/big.bin", "%{size_download}", timeout=4),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stolen = poison(testbed, attacker, victim, 2.5)
        got, _ = download.communicate(timeout=40)
    finally:
        download.kill()
    assert pinned(testbed, victim.ip, victim.mac)  # the forged ARP changed nothing
    assert int(got) >= 1_500_000  # the victim's traffic kept arriving at the victim
    assert stolen == 0  # and none of it at the attacker


def test_a_login_after_a_kick_finds_the_released_entry_and_asks_the_lan_nothing(testbed, gateway):
    """A kick releases the pin to the phone's own MAC (not deleted): the kernel checks it
    again before trusting it, any ARP may change it, and a login by address straight after
    needs no ARP probe (it used to cost one: up to 0.5 s when nobody answers)."""
    phone = testbed.phones[0]
    authorize(gateway, phone)
    assert pinned(testbed, phone.ip, phone.mac)
    gateway.call("deauthorize", mac=phone.mac, reason="admin-kick")
    entry = neighbour(testbed, phone.ip)
    assert entry is not None and entry[0] == phone.mac and "PERMANENT" not in entry[1]

    with arp_requests(testbed, phone) as listener:
        # The portal's way: by address only.
        gateway.call("authorize", ip=phone.ip, tier="free", source="free")
        # The control: the gateway's kernel asking for an address nobody has is heard.
        testbed.run(testbed.gw, "ping", "-c", "1", "-W", "1", NOBODY_IP, check=False)
        heard = listener.until(NOBODY_IP)
    # The probe's question is a broadcast; the kernel's own check of a known entry is not.
    assert (phone.ip, "broadcast") not in heard, heard
    assert pinned(testbed, phone.ip, phone.mac) and is_online(testbed, phone.ns)

    # Released, the entry is an ordinary one: ARP moves it, as before any login (the test
    # above), so a release is never a pin that outlives its session.
    attacker = testbed.phones[1]
    gateway.call("deauthorize", mac=phone.mac, reason="admin-kick")
    forge_until_repointed(testbed, attacker, phone, "a released entry")


def test_pins_follow_the_sessions(testbed, upstream, gateway_factory):
    # A hand's change to the pins is put right by a tick's whole look: every tick here.
    gateway = gateway_factory({"gateway": {"full_look_seconds": 0}})
    a, b = testbed.phones[0], testbed.phones[1]
    authorize(gateway, a)
    authorize(gateway, b)
    assert pinned(testbed, a.ip, a.mac) and pinned(testbed, b.ip, b.mac)

    # A kick removes the pin.
    gateway.call("deauthorize", mac=a.mac, reason="admin-kick")
    assert unpinned(testbed, a.ip)
    authorize(gateway, a)
    assert pinned(testbed, a.ip, a.mac)

    # A session moved to a new address moves its pin.
    new_ip = "10.10.0.77"
    readdress(testbed, a, new_ip)
    gateway.call("authorize", ip=new_ip, mac=a.mac, tier="premium", source="admin")
    assert pinned(testbed, new_ip, a.mac) and unpinned(testbed, a.ip)
    a.ip = new_ip

    # Reconcile: a pin removed by hand comes back, a stray pin on a client address goes.
    testbed.run(testbed.gw, "ip", "neigh", "del", b.ip, "dev", "br-lan")
    stray = "10.10.0.99"
    testbed.run(
        testbed.gw,
        "ip",
        "neigh",
        "replace",
        stray,
        "lladdr",
        "02:00:00:00:99:99",
        "nud",
        "permanent",
        "dev",
        "br-lan",
    )
    wait_until(lambda: pinned(testbed, b.ip, b.mac), timeout=5, what="the pin restored")
    wait_until(lambda: unpinned(testbed, stray), timeout=5, what="the stray pin removed")

    # A reboot empties the neighbour table: start-up pins every running session again.
    gateway.stop()
    testbed.run(testbed.gw, "ip", "neigh", "flush", "dev", "br-lan", "nud", "permanent")
    assert unpinned(testbed, a.ip) and unpinned(testbed, b.ip)
    gateway.start()
    assert pinned(testbed, a.ip, a.mac) and pinned(testbed, b.ip, b.mac)

    # The end of a session for every other reason unpins it too (here: blocked).
    gateway.call("block", mac=b.mac, reason="test")
    assert unpinned(testbed, b.ip)

    # Teardown leaves no pin behind.
    gateway.stop()
    gateway.cli("gateway", "teardown")
    assert unpinned(testbed, a.ip)


@pytest.mark.xfail(
    strict=True,
    reason="a full clone (MAC and address) of a sleeping phone is that phone to the gateway: "
    "nothing on an open SSID tells them apart (docs/security.md, MAC clone)",
)
def test_a_clone_of_a_sleeping_phone_gets_out(testbed, gateway):
    victim, clone = testbed.phones[0], testbed.phones[1]
    authorize(gateway, victim)
    testbed.run(victim.ns, "ip", "link", "set", "eth0", "down")  # the victim's phone sleeps
    testbed.ip_batch(
        clone.ns,
        "link set eth0 down",
        f"link set eth0 address {victim.mac}",
        "link set eth0 up",
        "addr flush dev eth0",
        f"addr add {victim.ip}/22 dev eth0",
        f"route replace default via {GW_LAN_IP}",
    )
    # What this test wants (and cannot have): the clone stays walled.
    assert not is_online(testbed, clone.ns)
