"""The simplest journey: walled before login, out after ``clients allow``."""

from tests.netns.helpers import curl_report
from testsupport.testbed import UPSTREAM_IP


def test_walled_then_allowed(testbed, gateway):
    phone = testbed.phones[0]
    page = f"http://{UPSTREAM_IP}/index.html"
    # redirected to the portal port; no portal runs here
    assert curl_report(testbed, phone.ns, page, "%{http_code}") == "000"
    gateway.cli("clients", "allow", phone.mac, "--ip", phone.ip, "--tier", "premium")
    assert curl_report(testbed, phone.ns, page, "%{http_code}") == "200"


def test_mac_is_learned_from_the_kernel(testbed, gateway):
    """The portal passes only the client's address: the gateway finds the MAC itself."""
    phone = testbed.phones[1]
    # The phone talks to the gateway (as it does when it loads the portal), so the kernel
    # has a neighbour entry; then the MAC is looked up, never taken from the request.
    testbed.run(phone.ns, "ping", "-c", "1", "-W", "1", "10.10.0.1")
    session = gateway.call("authorize", ip=phone.ip, tier="free")
    assert session["mac"] == phone.mac
    assert gateway.call("client", ip=phone.ip)["mac"] == phone.mac


def test_arp_probe_finds_a_silent_device(testbed, gateway):
    phone = testbed.phones[0]
    testbed.run(testbed.gw, "ip", "neigh", "flush", "dev", "br-lan")
    session = gateway.call("authorize", ip=phone.ip, tier="free")
    assert session["mac"] == phone.mac
