"""DNS before login is no tunnel (issue #10, item 1), with the real resolvers: the two
dnsmasq instances ``hotspot provision`` renders (the full one on port 53, the walled one on
``network.walled_dns_port``) in the gateway namespace next to the real gateway, and a fake
upstream resolver — a third dnsmasq in the upstream namespace — that logs every question it
gets.

A walled phone asks random names of every kind (A, AAAA, TXT, NULL; UDP and TCP; to the
gateway, and to an outside resolver directly): it gets NXDOMAIN at once and the upstream log
never sees them; a blocked phone gets no answer at all. The portal's name, the OS probes and
the walled garden still resolve (the probes to their real addresses, so the plain-HTTP probe
lands on the portal), with a TTL of 5 s at most; after login the very next lookup, even from
the same socket, reaches the full resolver. Where ``iodine`` is installed, a real DNS tunnel
through the gateway works for a logged-in phone and never connects for a walled or a blocked
one. Nothing leaves the test's namespaces.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
import uuid

import pytest

from hotspot import config as config_mod
from tests.netns.helpers import (
    GW_LAN_IP,
    PORTAL_MARKER,
    authorize,
    curl,
    dns_queries,
    dns_query,
    set_elements,
    start_gateway_resolvers,
    start_upstream_dns,
    wait_until,
)
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)"
)

GARDEN = "walled.example"
GARDEN_IP = "198.51.100.20"
PORTAL_NAME = "portal.desa.example"
PROBES = (
    "connectivitycheck.gstatic.com",
    "captive.apple.com",
    "www.msftconnecttest.com",
    "detectportal.firefox.com",
)
ANY_IP = "198.51.100.99"  # what the fake upstream answers for every other name
UPSTREAM_TTL = 300
WALLED_PORT = 5300
TUNNEL = "t.tunnel.example"
IODINED_PORT = 5353
TUNNEL_NET = ("10.99.0.1", "10.99.0.2")
IODINE_PASSWORD = "hst-tunnel-test"


def random_name(suffix: str = "tunnel.example") -> str:
    return f"x{uuid.uuid4().hex[:16]}.{suffix}"


@pytest.fixture
def village(testbed, tmp_path):
    """The village configuration the resolvers are rendered from: the testbed's gateway, a
    walled garden, the walled resolver on its own port, the portal by name."""
    return config_mod.load(
        overrides=config_mod.merge(
            testbed.gateway_settings(tmp_path),
            {
                "network": {"walled_garden_domains": [GARDEN], "walled_dns_port": WALLED_PORT},
                "portal": {"hostname": PORTAL_NAME},
                "dhcp": {
                    "range_start": "10.10.0.100",
                    "range_end": "10.10.0.150",
                    "upstream_dns": [UPSTREAM_IP],
                },
                "wifi": {"enabled": False},
            },
        )
    )


class Resolvers:
    def __init__(self, work):
        self.work = work
        self.upstream_log = work / "upstream.log"

    def upstream_questions(self) -> list[tuple[str, str]]:
        """(type, name) of every question the fake upstream resolver got."""
        text = self.upstream_log.read_text() if self.upstream_log.exists() else ""
        return re.findall(r"query\[(\w+)\] (\S+) from", text)

    def upstream_names(self) -> set[str]:
        return {name.lower() for _t, name in self.upstream_questions()}


@pytest.fixture
def resolvers(testbed, upstream, village, tmp_path):
    """The device's two resolvers in the gateway namespace; the logging fake upstream in the
    upstream namespace."""
    work = tmp_path / "dns"
    work.mkdir()
    work.chmod(0o755)
    testbed.run(testbed.up, "ip", "addr", "add", f"{GARDEN_IP}/32", "dev", "lo")
    start_upstream_dns(
        testbed,
        work,
        f"--local-ttl={UPSTREAM_TTL}",
        f"--address=/{GARDEN}/{GARDEN_IP}",
        *(f"--address=/{p}/{UPSTREAM_IP}" for p in PROBES),
        f"--server=/{TUNNEL}/{UPSTREAM_IP}#{IODINED_PORT}",
        f"--address=/#/{ANY_IP}",
    )
    start_gateway_resolvers(testbed, village, work)
    return Resolvers(work)


def _questions(server: str, names: list[str], **extra) -> list[dict]:
    return [
        {"server": server, "name": name, "type": qtype, "tcp": tcp, **extra}
        for name in names
        for qtype in ("A", "AAAA", "TXT", "NULL")
        for tcp in (False, True)
    ]


@pytest.fixture
def roomy_gateway(gateway_factory, upstream):
    """The gateway with a query rate no test burst reaches (a TCP query is ~5 packets):
    the rate meter has a test of its own."""
    return gateway_factory({"network": {"walled_dns_rate": 2000}})


@pytest.mark.parametrize("testbed", [3], indirect=True)
def test_walled_and_blocked_phones_tunnel_nothing_upstream(testbed, roomy_gateway, resolvers):
    gateway = roomy_gateway
    walled, blocked, online = testbed.phones
    gateway.call("block", mac=blocked.mac, reason="DNS tunnel test")
    authorize(gateway, online)
    names = {ns: [random_name() for _ in range(3)] for ns in (walled.ns, blocked.ns)}

    # To the gateway, to its WAN address and to an outside resolver directly: a phone with
    # a hard-coded resolver is no way round it.
    for server in (GW_LAN_IP, WAN_GW_IP, UPSTREAM_IP):
        got = dns_queries(testbed, walled.ns, _questions(server, names[walled.ns]))
        for q, answer in zip(_questions(server, names[walled.ns]), got, strict=True):
            assert answer.get("rcode") == 3 and answer["answers"] == [], (server, q, answer)
            # No SOA: nothing caches the NXDOMAIN, so nothing of it is left after login.
            assert answer["authority"] == [], (q, answer)
        got = dns_queries(testbed, blocked.ns, _questions(server, names[blocked.ns][:1], timeout=1))
        assert all("error" in a for a in got), f"a blocked phone got DNS answers: {got}"

    time.sleep(0.3)  # anything in flight would have arrived
    seen = resolvers.upstream_names()
    leaked = [n for ns_names in names.values() for n in ns_names if n in seen]
    assert leaked == [], f"names of walled/blocked phones reached upstream: {leaked}"
    # Control: a logged-in phone's random name does reach the fake upstream (the log works).
    control = random_name()
    answer = dns_query(testbed, online.ns, GW_LAN_IP, control)
    assert answer["answers"] == [[1, answer["answers"][0][1], ANY_IP]], answer
    assert control in resolvers.upstream_names()


def test_walled_phone_resolves_portal_probes_and_walled_garden(testbed, gateway, resolvers, portal):
    phone = testbed.phones[0]
    ask = [{"server": GW_LAN_IP, "name": name} for name in (PORTAL_NAME, *PROBES, GARDEN)]
    got = dict(
        zip((PORTAL_NAME, *PROBES, GARDEN), dns_queries(testbed, phone.ns, ask), strict=True)
    )
    assert [a[2] for a in got[PORTAL_NAME]["answers"]] == [GW_LAN_IP], got[PORTAL_NAME]
    for probe in PROBES:  # the real address, from upstream
        assert [a[2] for a in got[probe]["answers"]] == [UPSTREAM_IP], (probe, got[probe])
    assert [a[2] for a in got[GARDEN]["answers"]] == [GARDEN_IP], got[GARDEN]
    for name, answer in got.items():
        assert all(0 <= a[1] <= 5 for a in answer["answers"]), (name, answer)  # TTL ≤ 5 s
    assert {PROBES[0], GARDEN} <= resolvers.upstream_names()
    # The walled resolver fed the walled-garden set (nftset=); the probes opened nothing.
    wait_until(
        lambda: GARDEN_IP in set_elements(testbed, "walled_garden_dns"),
        3,
        what="walled_garden_dns filled by the walled resolver",
    )
    assert UPSTREAM_IP not in set_elements(testbed, "walled_garden_dns")

    # The probe's plain HTTP to the real address is the portal's (the sign-in sheet opens).
    probe = curl(
        testbed, phone.ns, f"http://{UPSTREAM_IP}/generate_204", "-H", f"Host: {PROBES[0]}"
    )
    assert (probe.code, probe.body) == ("200", PORTAL_MARKER), probe
    assert any(f"GET {PROBES[0]} /generate_204" in line for line in portal.received())

    # Logged in: the probe's answer is still right, and it now reaches the real server.
    authorize(gateway, phone)
    after = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/index.html", "-H", f"Host: {PROBES[0]}")
    assert (after.code, after.body) == ("200", "<h1>upstream ok</h1>"), after


def test_after_login_the_next_lookup_reaches_the_full_resolver(testbed, gateway, resolvers):
    """Even from the same socket: conntrack had bound that flow to the walled resolver."""
    phone = testbed.phones[0]
    before = random_name()
    walled = dns_query(testbed, phone.ns, GW_LAN_IP, before, sport=40053)
    assert walled.get("rcode") == 3 and before not in resolvers.upstream_names(), walled
    authorize(gateway, phone)
    after = random_name()
    full = dns_query(testbed, phone.ns, GW_LAN_IP, after, sport=40053)
    assert [a[2] for a in full["answers"]] == [ANY_IP], full
    assert after in resolvers.upstream_names()
    # And once logged out again, the same socket is walled at once.
    gateway.call("deauthorize", mac=phone.mac, reason="logout")
    again = random_name()
    walled_again = dns_query(testbed, phone.ns, GW_LAN_IP, again, sport=40053)
    assert walled_again.get("rcode") == 3, walled_again
    assert again not in resolvers.upstream_names()


_FLOOD = r"""
import json, random, socket, struct, sys, time
server, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for i in range(count):
    q = struct.pack(">HHHHHH", i + 1, 0x0100, 1, 0, 0, 0) + b"\x05flood\x07example\x00"
    s.sendto(q + struct.pack(">HH", 1, 1), (server, port))
answers = 0
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    try:
        s.recv(4096)
        answers += 1
    except TimeoutError:
        break
print(answers)
"""


def test_a_walled_phone_is_held_to_its_query_rate(testbed, gateway, resolvers):
    phone = testbed.phones[0]
    sent = 300
    out = testbed.run(phone.ns, sys.executable, "-c", _FLOOD, GW_LAN_IP, "53", str(sent))
    answered = int(out.stdout)
    rate = config_mod.load().network.walled_dns_rate
    # A burst of twice the rate passes, then about the rate per second.
    assert rate <= answered <= 2 * rate + 3 * rate, f"{answered} of {sent} answered"


# -- a real DNS tunnel ----------------------------------------------------------------------

needs_iodine = pytest.mark.skipif(
    shutil.which("iodine") is None or shutil.which("iodined") is None,
    reason="iodine is not installed (apt-get install iodine; .ci/run installs it)",
)


def _iodine(testbed, phone, log):
    return testbed.popen(
        phone.ns, "iodine", "-f", "-r", "-P", IODINE_PASSWORD, GW_LAN_IP, TUNNEL, log_path=log
    )


@needs_iodine
@pytest.mark.parametrize("testbed", [3], indirect=True)
def test_iodine_never_connects_before_login(testbed, roomy_gateway, resolvers, tmp_path):
    gateway = roomy_gateway
    walled, blocked, online = testbed.phones
    gateway.call("block", mac=blocked.mac, reason="DNS tunnel test")
    testbed.popen(
        testbed.up,
        "iodined",
        "-f",
        "-c",
        "-P",
        IODINE_PASSWORD,
        "-l",
        UPSTREAM_IP,
        "-p",
        str(IODINED_PORT),
        f"{TUNNEL_NET[0]}/24",
        TUNNEL,
        log_path=tmp_path / "iodined.log",
    )
    wait_until(
        lambda: "Listening" in (tmp_path / "iodined.log").read_text(), 10, what="iodined listening"
    )

    # Control: logged in, the tunnel comes up through the gateway's resolver (the topology
    # and the tunnel work; what stops the others is the gateway).
    authorize(gateway, online)
    up_log = tmp_path / "iodine-online.log"
    proc = _iodine(testbed, online, up_log)
    try:
        wait_until(
            lambda: "Connection setup complete" in up_log.read_text(),
            40,
            0.2,
            what=f"iodine connecting for a logged-in phone:\n{up_log.read_text()}",
        )
        assert (
            testbed.run(
                online.ns, "ping", "-c", "1", "-W", "3", TUNNEL_NET[0], check=False
            ).returncode
            == 0
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    time.sleep(0.5)  # the last of its queries

    def tunnel_questions() -> int:
        return sum(1 for _t, n in resolvers.upstream_questions() if n.endswith(TUNNEL))

    from_control = tunnel_questions()
    assert from_control > 0, "the control's tunnel queries never reached upstream"

    logs = {p.ns: tmp_path / f"iodine-{p.ns}.log" for p in (walled, blocked)}
    procs = [_iodine(testbed, p, logs[p.ns]) for p in (walled, blocked)]
    try:
        time.sleep(20)  # iodine retries its handshake for a while; give it every chance
        for ns, log in logs.items():
            text = log.read_text()
            assert "Connection setup complete" not in text, f"{ns}:\n{text}"
            assert "Server tunnel IP" not in text, f"{ns} logged in to iodined:\n{text}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    # Not one question of theirs reached upstream, let alone iodined.
    assert tunnel_questions() == from_control
