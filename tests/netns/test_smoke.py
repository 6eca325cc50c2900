"""The simplest journey: walled before login, out after ``clients allow``."""

from gateway.testbed import UPSTREAM_IP


def curl(bed, phone, url, *extra, timeout=3):
    return bed.run(phone.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                   "-m", str(timeout), *extra, url, check=False)


def test_walled_then_allowed(testbed, gateway):
    phone = testbed.phones[0]
    before = curl(testbed, phone, f"http://{UPSTREAM_IP}/index.html")
    assert before.stdout.split()[0] == "000"  # redirected to the portal port; no portal runs here
    gateway.cli("clients", "allow", phone.mac, "--ip", phone.ip, "--tier", "premium")
    after = curl(testbed, phone, f"http://{UPSTREAM_IP}/index.html")
    assert after.stdout.split()[0] == "200"
