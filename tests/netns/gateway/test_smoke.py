"""The simplest journey: walled before login, out after ``clients allow``."""

from testsupport.testbed import UPSTREAM_IP


def curl(bed, phone, url, *extra, timeout=3):
    return bed.run(
        phone.ns,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-m",
        str(timeout),
        *extra,
        url,
        check=False,
    )


def test_walled_then_allowed(testbed, gateway):
    phone = testbed.phones[0]
    before = curl(testbed, phone, f"http://{UPSTREAM_IP}/index.html")
    assert before.stdout.split()[0] == "000"  # redirected to the portal port; no portal runs here
    gateway.cli("clients", "allow", phone.mac, "--ip", phone.ip, "--tier", "premium")
    after = curl(testbed, phone, f"http://{UPSTREAM_IP}/index.html")
    assert after.stdout.split()[0] == "200"


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
