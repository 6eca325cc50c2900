"""The DHCP and DNS path for real: dnsmasq with the configuration ``hotspot provision``
renders, in the gateway namespace on br-lan, next to the real gateway; a phone without an
address gets a lease from the range with DHCP option 114 (RFC 8910) from ISC dhclient; a
walled-garden domain resolved by a phone not logged in (through the walled resolver, which asks
that dnsmasq) lands in the gateway's ``walled_garden_dns`` set, and the phone reaches it.

The "internet" answering DNS is a second dnsmasq in the upstream namespace (authoritative
for ``walled.example``), so the gateway's dnsmasq forwards the query and its ``nftset=``
fires on a real upstream answer. Nothing leaves the test's namespaces.
"""

from __future__ import annotations

import ipaddress
import shutil
import time

import pytest

from hotspot import config as config_mod
from provisioning import render as R
from tests.netns.helpers import (
    GW_LAN_IP,
    curl,
    dns_query,
    set_elements,
    start_gateway_resolvers,
    start_upstream_dns,
    wait_until,
)
from testsupport import dhclient
from testsupport.testbed import UPSTREAM_IP, stop_process_group

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None or shutil.which("dhclient") is None,
    reason="needs dnsmasq (dnsmasq-base) and dhclient (isc-dhcp-client)",
)

RANGE = ("10.10.0.100", "10.10.0.150")
DOMAIN = "walled.example"


@pytest.fixture
def village(testbed, tmp_path):
    """The village configuration of the test: the testbed's gateway, a walled-garden domain
    and a small DHCP range."""
    return config_mod.load(
        overrides=config_mod.merge(
            testbed.gateway_settings(tmp_path),
            {
                "network": {"walled_garden_domains": [DOMAIN]},
                "dhcp": {
                    "range_start": RANGE[0],
                    "range_end": RANGE[1],
                    "lease_minutes": 10,
                    "upstream_dns": [UPSTREAM_IP],
                },
                "wifi": {"enabled": False},
            },
        )
    )


@pytest.fixture
def dnsmasq(testbed, gateway, village, tmp_path):
    """The device's two resolvers (the full one serving DHCP) in the gateway namespace; an
    authoritative fake upstream DNS in the upstream namespace."""
    work = tmp_path / "dnsmasq"
    work.mkdir()
    work.chmod(0o755)
    start_upstream_dns(testbed, work, f"--address=/{DOMAIN}/{UPSTREAM_IP}")
    resolvers = start_gateway_resolvers(testbed, village, work, "--no-hosts", "--log-dhcp")
    return {"leases": resolvers.leases, "log": resolvers.log, "api_url": R.api_url(village)}


def start_dhclient(testbed, phone, work):
    """dhclient in the phone's namespace, trying once; its script writes BOUND.env into
    ``work``."""
    work.mkdir()
    testbed.popen(
        phone.ns,
        *dhclient.command(work, phone.ifname, timeout=30, retry=1, once=True),
        log_path=work / "dhclient.log",
    )
    return work / dhclient.BOUND


def test_phone_gets_a_lease_with_option_114(testbed, dnsmasq, tmp_path):
    phone = testbed.add_phone(3, address=False)
    work = tmp_path / "dhclient"
    bound = start_dhclient(testbed, phone, work)
    try:
        wait_until(bound.exists, 40, 0.1, what="dhclient bound")
    except AssertionError:
        pytest.fail(
            f"no lease:\n{(work / 'dhclient.log').read_text()}\n{dnsmasq['log'].read_text()}"
        )
    env = dhclient.lease_env(bound)
    ip = ipaddress.IPv4Address(env["new_ip_address"])
    assert ipaddress.IPv4Address(RANGE[0]) <= ip <= ipaddress.IPv4Address(RANGE[1])
    assert env["new_subnet_mask"] == "255.255.252.0"
    assert env["new_routers"] == GW_LAN_IP
    assert env["new_domain_name_servers"] == GW_LAN_IP
    assert env["new_dhcp_lease_time"] == "600"
    # RFC 8910: the captive-portal API URL, exactly as rendered from the configuration.
    assert dnsmasq["api_url"] == "http://10.10.0.1:8080/api/captive"
    assert env["new_rfc8910_captive_portal"] == dnsmasq["api_url"]
    # The lease is on the server, and the phone really has the address.
    assert phone.mac in dnsmasq["leases"].read_text()
    addrs = testbed.run(phone.ns, "ip", "-4", "-o", "addr", "show", "dev", phone.ifname).stdout
    assert f"{ip}/22" in addrs


def test_walled_garden_domain_fills_the_nft_set(testbed, dnsmasq, gateway):
    phone = testbed.phones[0]  # never logged in
    assert UPSTREAM_IP not in set_elements(testbed, "walled_garden_dns")
    before = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/index.html")
    assert before.code != "200"  # walled: the request went to the (absent) portal
    answer = dns_query(testbed, phone.ns, GW_LAN_IP, DOMAIN)
    assert answer["rcode"] == 0 and [a[2] for a in answer["answers"] if a[0] == 1] == [UPSTREAM_IP]
    # dnsmasq's nftset= put the answer into the gateway's set, with the set's timeout.
    wait_until(
        lambda: UPSTREAM_IP in set_elements(testbed, "walled_garden_dns"),
        3,
        what="walled_garden_dns filled",
    )
    after = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/index.html")
    assert after.code == "200" and "upstream ok" in after.body
    # A name outside the garden does not resolve before login (the walled resolver answers
    # NXDOMAIN) and opens nothing.
    assert dns_query(testbed, phone.ns, GW_LAN_IP, "other.example").get("rcode") == 3
    assert set_elements(testbed, "walled_garden_dns") == [UPSTREAM_IP]


def test_a_crowd_of_phones_gets_leases_at_once(testbed, dnsmasq, tmp_path):
    """After a power cut every phone asks at once; dnsmasq's pre-offer ping would make each
    wait ~3 s in turn (15 s for five): the rendered config turns it off."""
    started = time.monotonic()
    bounds = [
        start_dhclient(testbed, testbed.add_phone(i, address=False), tmp_path / f"c{i}")
        for i in range(3, 8)
    ]
    wait_until(lambda: all(b.exists() for b in bounds), 30, 0.05, what="five leases")
    assert time.monotonic() - started < 5, "five phones waited for their leases"


def test_a_logged_in_phone_joining_again_keeps_its_pinned_neighbour(
    testbed, dnsmasq, gateway, tmp_path
):
    """A logged-in phone that joins the Wi-Fi again asks for its address from an interface
    without one (no ``ciaddr``). dnsmasq answered such a client by unicast and, to send it,
    wrote the address → MAC into the kernel's ARP cache itself (``SIOCSARP``, no
    ``ATF_PERM``): the session's PERMANENT entry became STALE until the gateway's next tick
    put it back, and meanwhile an ARP claiming the address could take it over. Found by the
    soak (3,617 such repairs in 105 minutes). The rendered configuration has dnsmasq answer
    unconfigured clients by broadcast (``dhcp-broadcast``): it writes nothing there."""
    phone = testbed.add_phone(3, address=False)
    first = tmp_path / "first"
    first.mkdir()
    client = testbed.popen(
        phone.ns,
        *dhclient.command(first, phone.ifname, timeout=30, retry=1, once=True),
        log_path=first / "dhclient.log",
    )
    wait_until((first / dhclient.BOUND).exists, 40, 0.1, what="the first lease")
    ip = dhclient.lease_env(first / dhclient.BOUND)["new_ip_address"]
    gateway.call("authorize", mac=phone.mac, ip=ip, tier="free", source="admin")

    def entry() -> str:
        return testbed.run(testbed.gw, "ip", "neigh", "show", ip, "dev", "br-lan").stdout

    assert "PERMANENT" in entry() and phone.mac in entry()
    # Off the Wi-Fi and back: the address gone, a new DHCP conversation from scratch.
    stop_process_group(client)
    testbed.run(phone.ns, "ip", "addr", "flush", "dev", phone.ifname)
    watch = testbed.popen(
        testbed.gw, "ip", "monitor", "neigh", "dev", "br-lan", log_path=tmp_path / "neigh.log"
    )
    try:
        time.sleep(0.3)  # the monitor listening
        again = tmp_path / "again"
        start_dhclient(testbed, phone, again)
        wait_until((again / dhclient.BOUND).exists, 40, 0.1, what="the lease again")
        assert dhclient.lease_env(again / dhclient.BOUND)["new_ip_address"] == ip
        time.sleep(0.5)
    finally:
        stop_process_group(watch)
    changes = [
        line for line in (tmp_path / "neigh.log").read_text().splitlines() if line.startswith(ip)
    ]
    assert changes == [], changes  # the pin was never touched
    assert "PERMANENT" in entry() and phone.mac in entry()
