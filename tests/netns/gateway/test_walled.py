"""The walled garden, with real traffic: before login a phone gets the portal for plain HTTP
to any address, DNS (to the walled resolver) and DHCP to the gateway, and nothing else — no HTTPS, QUIC, outside DNS,
ICMP or IPv6 ever reaches the upstream host. After ``clients allow`` everything does.

"Never reaches upstream" is proved at the far end: recording UDP/TCP listeners in the
upstream namespace, plus nftables counters at the earliest hook of its WAN link (the
:class:`~tests.netns.helpers.Witness`), which also see ICMP and refused TCP handshakes.
"""

from __future__ import annotations

import time

from tests.netns.helpers import (
    GW_LAN_IP,
    PORTAL_MARKER,
    PORTAL_PORT,
    UPSTREAM6,
    UPSTREAM_IP,
    WAN_GW_IP,
    Witness,
    authorize,
    curl,
    ping,
    run_many,
    send_udp,
    setup_ipv6,
    wait_until,
)

# Counters in the upstream namespace for what a walled phone must never deliver there.
WALLED_PROBES = {
    "tcp443": "tcp dport 443",
    "tcp5201": "tcp dport 5201",
    "udp443": "udp dport 443",
    "udp53": "udp dport 53",
    "icmp": "icmp type echo-request",
    # Anything at all from the LAN, NATed or not (the gateway itself sends nothing here).
    "any_from_lan": f"ip saddr {{ {WAN_GW_IP}, 10.10.0.0/22 }}",
}


def test_http_to_any_address_is_redirected_to_portal(testbed, gateway, portal):
    phone = testbed.phones[0]
    urls = [
        f"http://{UPSTREAM_IP}/",
        f"http://{UPSTREAM_IP}/index.html",
        f"http://{GW_LAN_IP}/",  # the gateway's own port 80 too
        "http://203.0.113.7/generate_204",
    ]  # an address nobody has: never leaves the LAN
    for url in urls:
        got = curl(testbed, phone.ns, url)
        assert (got.code, got.body) == ("200", PORTAL_MARKER), (
            f"{url} before login should be answered by the portal stand-in, got {got}"
        )
    hosts = " ".join(portal.received())
    for host in (UPSTREAM_IP, GW_LAN_IP, "203.0.113.7"):
        assert f"GET {host} /" in hosts, f"the portal never saw the request for {host}: {hosts}"


def test_portal_port_is_reachable_directly(testbed, gateway, portal):
    for phone in testbed.phones:
        got = curl(testbed, phone.ns, f"http://{GW_LAN_IP}:{PORTAL_PORT}/login")
        assert (got.code, got.body) == ("200", PORTAL_MARKER), got


def test_walled_client_traffic_never_reaches_upstream(testbed, gateway, listen):
    phone = testbed.phones[0]
    quic = listen(testbed.up, "udp", UPSTREAM_IP, 443)
    dns = listen(testbed.up, "udp", UPSTREAM_IP, 53)
    witness = Witness(testbed, WALLED_PROBES)

    # TCP to anything but port 80 is refused at once (a TCP reset: phones fall back to the
    # plain-HTTP probe instead of waiting for a timeout).
    for url in (
        f"http://{UPSTREAM_IP}:443/",
        f"https://{UPSTREAM_IP}/",
        f"http://{UPSTREAM_IP}:5201/",
    ):
        got = curl(testbed, phone.ns, url, "-k")
        assert got.code == "000" and got.rc == 7, (
            f"{url} before login must be refused (curl rc 7), got rc {got.rc} code {got.code}"
        )
    send_udp(testbed, phone.ns, UPSTREAM_IP, 443, "quic-initial")
    send_udp(testbed, phone.ns, UPSTREAM_IP, 53, "dns-query")
    assert not ping(testbed, phone.ns, UPSTREAM_IP), "ping to upstream answered before login"

    quic.assert_silent()
    dns.assert_silent(settle=0)
    counts = witness.counts()
    assert all(n == 0 for n in counts.values()), f"packets reached upstream before login: {counts}"

    # Control: the same probes do arrive once the phone is allowed, so the silence above was
    # the gateway's doing and not a deaf listener or a blind counter.
    authorize(gateway, phone)
    send_udp(testbed, phone.ns, UPSTREAM_IP, 443, "quic-initial")
    assert quic.wait_received()
    assert ping(testbed, phone.ns, UPSTREAM_IP)
    after = witness.counts()
    assert after["udp443"] > 0 and after["icmp"] > 0 and after["any_from_lan"] > 0, after


def test_ipv6_from_lan_is_never_forwarded(testbed, upstream, gateway_factory, listen):
    setup_ipv6(testbed)
    phone = testbed.phones[0]
    udp6 = listen(testbed.up, "udp", UPSTREAM6, 53)
    tcp6 = listen(testbed.up, "tcp", UPSTREAM6, 8443)
    witness = Witness(testbed, {"v6_from_lan": "ip6 saddr fd00:1::/64"})

    # Without the gateway's table IPv6 is routed end to end: the test topology is sound.
    # (The first exchange may wait for neighbour discovery.)
    wait_until(
        lambda: ping(testbed, phone.ns, UPSTREAM6),
        10,
        what="IPv6 ping to upstream before the gateway ran",
    )
    send_udp(testbed, phone.ns, UPSTREAM6, 53, "v6-control")
    assert udp6.wait_received(1)
    assert curl(testbed, phone.ns, f"http://[{UPSTREAM6}]:8443/", timeout=2).rc != 28
    assert tcp6.wait_received(1)
    udp_before, tcp_before = len(udp6.received()), len(tcp6.received())
    seen_before = witness.counts()["v6_from_lan"]

    gateway = gateway_factory()

    def assert_blocked(when: str) -> None:
        send_udp(testbed, phone.ns, UPSTREAM6, 53, "v6-dns")
        icmp, tcp = run_many(
            testbed,
            [
                (phone.ns, ["ping", "-n", "-q", "-c", "1", "-W", "1", UPSTREAM6]),
                (phone.ns, ["curl", "-s", "-m", "1", f"http://[{UPSTREAM6}]:8443/"]),
            ],
        )
        assert icmp.returncode != 0, f"IPv6 ping answered {when}"
        assert tcp.returncode != 0, f"IPv6 TCP connected {when}"
        time.sleep(0.2)  # let anything still in flight arrive
        assert len(udp6.received()) == udp_before, f"IPv6 UDP reached upstream {when}"
        assert len(tcp6.received()) == tcp_before, f"IPv6 TCP reached upstream {when}"
        assert witness.counts()["v6_from_lan"] == seen_before, f"IPv6 reached upstream {when}"

    assert_blocked("before login")
    # An IPv4 login does not open IPv6 (the client's v6 address is not bound to anything).
    authorize(gateway, phone)
    assert curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/index.html").code == "200"
    assert_blocked("after an IPv4 login")


def test_dns_and_dhcp_to_the_gateway_are_allowed_before_login(testbed, gateway, listen):
    """Before login DNS goes to the walled resolver (port 5300: names limited there, see
    tests/netns/provisioning/test_dns_before_login.py); after login to the full one (53)."""
    phone = testbed.phones[0]
    walled_dns = listen(testbed.gw, "udp", GW_LAN_IP, 5300)
    walled_dns_tcp = listen(testbed.gw, "tcp", GW_LAN_IP, 5300)
    dns = listen(testbed.gw, "udp", GW_LAN_IP, 53)
    dns_tcp = listen(testbed.gw, "tcp", GW_LAN_IP, 53)
    dhcp = listen(testbed.gw, "udp", "0.0.0.0", 67)
    other = listen(testbed.gw, "udp", GW_LAN_IP, 123)  # NTP on the gateway is not open

    send_udp(testbed, phone.ns, GW_LAN_IP, 53, "dns-query")
    assert any("dns-query" in line for line in walled_dns.wait_received())
    curl(testbed, phone.ns, f"http://{GW_LAN_IP}:53/", timeout=1)
    assert walled_dns_tcp.wait_received()
    send_udp(testbed, phone.ns, GW_LAN_IP, 67, "dhcp-unicast", sport=68)
    send_udp(testbed, phone.ns, "255.255.255.255", 67, "dhcp-broadcast", sport=68)
    got = " ".join(dhcp.wait_received(2))
    assert "dhcp-unicast" in got and "dhcp-broadcast" in got, got
    send_udp(testbed, phone.ns, GW_LAN_IP, 123, "ntp")
    other.assert_silent()
    dns.assert_silent(settle=0)
    dns_tcp.assert_silent(settle=0)

    authorize(gateway, phone)
    send_udp(testbed, phone.ns, GW_LAN_IP, 53, "dns-after-login")
    assert any("dns-after-login" in line for line in dns.wait_received())
    curl(testbed, phone.ns, f"http://{GW_LAN_IP}:53/", timeout=1)
    assert dns_tcp.wait_received()


def test_allowed_client_reaches_upstream(testbed, gateway, listen):
    phone = testbed.phones[0]
    quic = listen(testbed.up, "udp", UPSTREAM_IP, 443)
    dns = listen(testbed.up, "udp", UPSTREAM_IP, 53)
    assert curl(testbed, phone.ns, f"http://{UPSTREAM_IP}:443/").code == "000"

    gateway.cli("clients", "allow", phone.mac, "--ip", phone.ip, "--tier", "premium")

    page = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/index.html")
    assert (page.code, page.body) == ("200", "<h1>upstream ok</h1>"), page
    tls_port = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}:443/index.html")
    assert (tls_port.code, tls_port.body) == ("200", "<h1>upstream ok</h1>"), tls_port
    send_udp(testbed, phone.ns, UPSTREAM_IP, 443, "quic-initial")
    send_udp(testbed, phone.ns, UPSTREAM_IP, 53, "dns-query")
    # NATed: upstream sees the gateway's WAN address, never the LAN one.
    assert quic.wait_received()[0].startswith(f"{WAN_GW_IP} ")
    assert dns.wait_received()[0].startswith(f"{WAN_GW_IP} ")
    assert ping(testbed, phone.ns, UPSTREAM_IP)
    # The other phone is still walled.
    other = testbed.phones[1]
    assert curl(testbed, other.ns, f"http://{UPSTREAM_IP}:443/").code == "000"
