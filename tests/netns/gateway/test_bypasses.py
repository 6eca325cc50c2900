"""The data-path bypasses of issue #10, items 2-5, attacked for real: each test first shows
the attack working without the gateway's table (the topology is sound and the listener
hears), then failing with it. (Item 1, DNS tunnels, is tests/netns/provisioning/
test_dns_before_login.py: it needs the rendered resolvers.)

2. A walled-garden address (by name or by address) is reachable on the web's ports only.
3. IPv6 to the gateway itself: only neighbour discovery; a rogue router advert from a phone
   is not taken.
4. Phone to phone through the gateway (the hairpin round the access points' isolation).
5. From the uplink: nothing of the portal, DNS or DHCP; configured management ports only.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.netns.helpers import (
    GW_LAN_IP,
    LAN6_GW,
    PORTAL_PORT,
    Witness,
    authorize,
    curl,
    ping,
    run_many,
    send_udp,
    setup_ipv6,
    wait_until,
)
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP

GARDEN_BY_NAME = "198.51.100.20"  # as dnsmasq's nftset= puts it into walled_garden_dns
GARDEN_BY_ADDRESS = "198.51.100.21"  # network.walled_garden


def _tcp_connects(bed, ns, host, port, timeout=1.0) -> bool:
    """A TCP handshake completes (curl's rc 52/56: connected, no HTTP answer)."""
    got = curl(bed, ns, f"http://{host}:{port}/", timeout=timeout)
    return got.rc not in (7, 28)


# -- 2. the walled garden: web ports only ---------------------------------------------------


def test_walled_garden_opens_only_web_ports(testbed, upstream, gateway_factory, listen):
    for addr in (GARDEN_BY_NAME, GARDEN_BY_ADDRESS):
        testbed.run(testbed.up, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
    gateway = gateway_factory({"network": {"walled_garden": [GARDEN_BY_ADDRESS]}})
    testbed.run(
        testbed.gw,
        "nft",
        "add",
        "element",
        "inet",
        "hotspot",
        "walled_garden_dns",
        f"{{ {GARDEN_BY_NAME} timeout 30m }}",
    )
    phone = testbed.phones[0]  # never logged in
    witness = Witness(
        testbed,
        {
            "other": f"ip daddr {{ {GARDEN_BY_NAME}, {GARDEN_BY_ADDRESS} }} "
            "meta l4proto . th dport != { tcp . 80, tcp . 443, udp . 443 }",
            "icmp": "icmp type echo-request",
        },
    )
    for addr in (GARDEN_BY_NAME, GARDEN_BY_ADDRESS):
        web = listen(testbed.up, "http", addr, 80, "garden-page")
        https = listen(testbed.up, "tcp", addr, 443)
        quic = listen(testbed.up, "udp", addr, 443)
        ntp = listen(testbed.up, "udp", addr, 123)
        ssh = listen(testbed.up, "tcp", addr, 22)
        # The web passes: HTTP, HTTPS's port, QUIC.
        page = curl(testbed, phone.ns, f"http://{addr}/")
        assert (page.code, page.body) == ("200", "garden-page"), (addr, page)
        assert web.wait_received()  # the garden's own server, not the portal, answered
        assert _tcp_connects(testbed, phone.ns, addr, 443) and https.wait_received()
        send_udp(testbed, phone.ns, addr, 443, "quic-initial")
        assert quic.wait_received()
        # Nothing else: another UDP port, another TCP port (refused at once), ICMP.
        send_udp(testbed, phone.ns, addr, 123, "ntp")
        ssh_try = curl(testbed, phone.ns, f"http://{addr}:22/", timeout=2)
        assert ssh_try.rc == 7, f"TCP 22 to the garden {addr}: {ssh_try}"  # a reset
        assert not ping(testbed, phone.ns, addr)
        ntp.assert_silent()
        ssh.assert_silent(settle=0)
    assert witness.counts() == {"other": 0, "icmp": 0}, witness.counts()
    # Control: a logged-in phone reaches those ports (the listeners hear, the counters count).
    authorize(gateway, phone)
    send_udp(testbed, phone.ns, GARDEN_BY_NAME, 123, "ntp")
    assert ping(testbed, phone.ns, GARDEN_BY_NAME)
    assert witness.counts()["other"] > 0 and witness.counts()["icmp"] > 0


# -- 3. IPv6 to the gateway -----------------------------------------------------------------


def test_ipv6_to_the_gateway_is_only_neighbour_discovery(
    testbed, upstream, gateway_factory, listen
):
    setup_ipv6(testbed)
    walled, online = testbed.phones
    services = [
        listen(testbed.gw, "udp", LAN6_GW, 53),
        listen(testbed.gw, "tcp", LAN6_GW, 53),
        listen(testbed.gw, "tcp", LAN6_GW, PORTAL_PORT),
        listen(testbed.gw, "tcp", LAN6_GW, 22),
    ]

    def knock(phone) -> None:
        send_udp(testbed, phone.ns, LAN6_GW, 53, "v6-dns")
        run_many(
            testbed,
            [
                (phone.ns, ["curl", "-s", "-m", "1", f"http://[{LAN6_GW}]:{port}/"])
                for port in (53, PORTAL_PORT, 22)
            ],
            timeout=5,
        )

    # Without the gateway's table every v6 listener of the gateway answers a phone.
    wait_until(lambda: ping(testbed, walled.ns, LAN6_GW), 10, what="IPv6 ping to the gateway")
    knock(walled)
    for svc in services:
        assert svc.wait_received(), svc
    heard = [len(svc.received()) for svc in services]

    gateway = gateway_factory()
    authorize(gateway, online)
    for phone in (walled, online):
        knock(phone)
        assert not ping(testbed, phone.ns, LAN6_GW), f"IPv6 echo answered for {phone.ns}"
    time.sleep(0.3)
    assert [len(svc.received()) for svc in services] == heard, "a v6 service answered"
    # Neighbour discovery still works: the phone learned the gateway's link-layer address.
    testbed.run(walled.ns, "ip", "-6", "neigh", "flush", "dev", "eth0")
    send_udp(testbed, walled.ns, LAN6_GW, 53, "nd-trigger")
    neigh = wait_until(
        lambda: [
            line
            for line in testbed.run(
                walled.ns, "ip", "-6", "neigh", "show", LAN6_GW
            ).stdout.splitlines()
            if "lladdr" in line
        ],
        5,
        what="neighbour discovery of the gateway's v6 address",
    )
    assert "FAILED" not in neigh[0] and "INCOMPLETE" not in neigh[0], neigh


_ROGUE_RA = r"""
import sys
from scapy.all import (Ether, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IPv6,
                       conf, sendp)
conf.verb = 0
mac = sys.argv[1]
ra = (Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src="fe80::bad:1", dst="ff02::1", hlim=255)
      / ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=mac)
      / ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::", prefixlen=64, L=1, A=1,
                              validlifetime=3600, preferredlifetime=1800))
sendp(ra, iface="eth0", count=3, inter=0.2)
"""


def _took_the_advert(testbed) -> bool:
    routes = testbed.run(testbed.gw, "ip", "-6", "route", "show").stdout
    return "fe80::bad:1" in routes or "2001:db8:bad:" in routes


def test_a_rogue_router_advert_from_a_phone_is_not_taken(testbed, upstream, gateway_factory):
    pytest.importorskip("scapy")
    phone = testbed.phones[0]
    accept_ra = "net.ipv6.conf.br-lan.accept_ra"
    # The gateway's LAN as a kernel takes adverts by default (no forwarding of IPv6).
    testbed.run(testbed.gw, "sysctl", "-qw", "net.ipv6.conf.br-lan.forwarding=0", f"{accept_ra}=1")
    wait_until(
        lambda: (
            "fe80::" in testbed.run(testbed.gw, "ip", "-6", "addr", "show", "dev", "br-lan").stdout
        ),
        10,
        what="br-lan's link-local address",
    )

    def advertise() -> None:
        testbed.run(phone.ns, sys.executable, "-c", _ROGUE_RA, phone.mac)

    # Without the gateway: the phone becomes the gateway's IPv6 router.
    advertise()
    wait_until(lambda: _took_the_advert(testbed), 5, what="the control: advert taken")
    testbed.run(testbed.gw, "ip", "-6", "route", "flush", "proto", "ra", check=False)
    testbed.run(
        testbed.gw, "ip", "-6", "route", "del", "2001:db8:bad::/64", "dev", "br-lan", check=False
    )
    assert not _took_the_advert(testbed)

    gateway_factory()
    # The gateway refuses adverts on the LAN itself (accept_ra=0) ...
    assert testbed.run(testbed.gw, "sysctl", "-n", accept_ra).stdout.strip() == "0"
    # ... and its table drops them even where that sysctl is put back (a hand install).
    testbed.run(testbed.gw, "sysctl", "-qw", f"{accept_ra}=1")
    advertise()
    time.sleep(1)
    assert not _took_the_advert(testbed), testbed.run(testbed.gw, "ip", "-6", "route").stdout


# -- 4. the hairpin -------------------------------------------------------------------------


def test_phones_cannot_reach_each_other_through_the_gateway(
    testbed, upstream, gateway_factory, listen
):
    a, b = testbed.phones
    # The access points' client isolation, as in the field: the phones' ports cannot talk to
    # each other directly, only to the gateway.
    for i in (1, 2):
        testbed.run(testbed.gw, "bridge", "link", "set", "dev", f"lan{i}", "isolated", "on")
    target = listen(b.ns, "udp", b.ip, 9999)
    send_udp(testbed, a.ns, b.ip, 9999, "direct")
    target.assert_silent()  # isolation holds on its own
    # The hairpin: A sends to B through the gateway (a host route via 10.10.0.1).
    testbed.run(a.ns, "sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=0")
    testbed.run(a.ns, "ip", "route", "add", f"{b.ip}/32", "via", GW_LAN_IP)
    send_udp(testbed, a.ns, b.ip, 9999, "hairpin")
    assert any("hairpin" in line for line in target.wait_received()), (
        "the control: the hairpin through a plain router works"
    )
    heard = len(target.received())

    gateway = gateway_factory()
    authorize(gateway, a)
    authorize(gateway, b)
    assert curl(testbed, a.ns, f"http://{UPSTREAM_IP}/index.html").code == "200"
    send_udp(testbed, a.ns, b.ip, 9999, "hairpin-logged-in", count=5)
    assert not ping(testbed, a.ns, b.ip)
    time.sleep(0.3)
    assert len(target.received()) == heard, target.received()
    # Counted: the operator can see the attempts.
    rules = json.loads(
        testbed.run(testbed.gw, "nft", "-j", "list", "chain", "inet", "hotspot", "from_lan").stdout
    )["nftables"]
    hairpin = [
        r["rule"]
        for r in rules
        if "rule" in r
        and any(
            e.get("match", {}).get("left") == {"meta": {"key": "oifname"}}
            for e in r["rule"]["expr"]
        )
    ]
    packets = next(e["counter"]["packets"] for e in hairpin[0]["expr"] if "counter" in e)
    assert packets >= 6, hairpin


# -- 5. the uplink --------------------------------------------------------------------------


def test_nothing_of_the_lan_services_answers_on_the_uplink(
    testbed, upstream, gateway_factory, listen
):
    # "The internet" routes the LAN to the gateway: Linux would deliver 10.10.0.1:8080 from
    # the WAN as readily as 192.0.2.1:8080 (weak host model).
    testbed.run(testbed.up, "ip", "route", "add", "10.10.0.0/22", "via", WAN_GW_IP)
    closed = {
        ("tcp", PORTAL_PORT),
        ("udp", 53),
        ("tcp", 53),
        ("udp", 67),
        ("udp", 5300),
        ("tcp", 5300),
        ("tcp", 2222),
    }
    listeners = {
        (kind, port): listen(testbed.gw, kind, "0.0.0.0", port)
        for kind, port in closed | {("tcp", 22)}
    }

    def knock() -> None:
        for target in (WAN_GW_IP, GW_LAN_IP):
            for kind, port in listeners:
                if kind == "udp":
                    send_udp(
                        testbed,
                        testbed.up,
                        target,
                        port,
                        f"from-wan-{port}",
                        sport=68 if port == 67 else 0,
                    )
            run_many(
                testbed,
                [
                    (testbed.up, ["curl", "-s", "-m", "1", f"http://{target}:{port}/"])
                    for kind, port in listeners
                    if kind == "tcp"
                ],
                timeout=5,
            )

    knock()  # without the gateway's table everything answers from the uplink
    for key, lst in listeners.items():
        assert lst.wait_received(2), f"the control: {key} did not hear the uplink"
    heard = {key: len(lst.received()) for key, lst in listeners.items()}

    gateway_factory({"network": {"wan_tcp_ports": [22]}})
    knock()
    time.sleep(0.3)
    now = {key: len(lst.received()) for key, lst in listeners.items()}
    assert now[("tcp", 22)] == heard[("tcp", 22)] + 2, "the management port must answer"
    opened = {key for key in closed if now[key] != heard[key]}
    assert not opened, f"answered on the uplink: {sorted(opened)}"
    # Replies to the gateway's own traffic still come in.
    own = testbed.run(
        testbed.gw, "curl", "-s", "-m", "3", f"http://{UPSTREAM_IP}/index.html", check=False
    )
    assert "upstream ok" in own.stdout
