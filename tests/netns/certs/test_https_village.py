"""With a certificate in force, the village for real (issue #15, item 4): the real gateway,
the two dnsmasq resolvers as ``hotspot provision`` renders them, and the real portal's TLS
listener (``hotspot portal run --tls``), all in the testbed's namespaces, on a configuration
that names only ``[sync] cert_zone`` (the pair in ``cert_dir`` is what the sync agent
installs). A phone without an address gets DHCP option 114 with the ``https://`` API URL,
resolves the name to the portal through the gateway's DNS (before login), and fetches
``https://<name>/api/captive`` verifying the chain against the CA's root. The CA here is a
local one (the ACME path with pebble is test_acme_certs.py)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from cryptography.hazmat.primitives import serialization

from hotspot import certs
from hotspot import config as config_mod
from tests.netns.helpers import GW_LAN_IP, dns_query, start_gateway_resolvers, wait_until
from tests.unit.sync.cert_helpers import ZONE
from tests.unit.sync.test_certs import LocalCA
from testsupport import dhclient

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None or shutil.which("dhclient") is None,
    reason="needs dnsmasq (dnsmasq-base) and dhclient (isc-dhcp-client)",
)

NAME = f"desa-a.{ZONE}"


def test_a_phone_gets_https_in_option_114_resolves_the_name_and_verifies_the_portal(
    testbed, gateway_factory, upstream, tmp_path
):
    folder = tmp_path / "tls"
    ca = LocalCA()
    key = certs.new_key()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    chain = certs.check_chain(ca.issue(certs.make_csr(key, NAME)).encode(), key, NAME, now)
    certs.install(folder, certs.key_pem(key), chain)
    gw = gateway_factory(
        {
            "sync": {
                "upstream_url": "http://127.0.0.1:9",
                "gateway_id": "desa-a",
                "secret": "a-secret-" + "a" * 40,
                "cert_zone": ZONE,
                "cert_dir": str(folder),
            },
            "dhcp": {"range_start": "10.10.0.100", "range_end": "10.10.0.150"},
            "wifi": {"enabled": False},
            "portal": {"user": ""},
        }
    )
    village = config_mod.load(gw.config_path)
    assert village.portal.hostname == NAME and village.portal.tls  # taken from the pair
    work = tmp_path / "dnsmasq"
    work.mkdir()
    work.chmod(0o755)
    resolvers = start_gateway_resolvers(testbed, village, work, "--no-hosts", "--log-dhcp")
    log = tmp_path / "portal-tls.log"
    testbed.popen(testbed.gw, *gw.hotspot("portal", "run", "--tls"), log_path=log)
    try:
        testbed.wait_port(testbed.gw, GW_LAN_IP, village.portal.https_port, timeout=40)
    except Exception:  # noqa: BLE001 - show why the TLS portal did not come up
        pytest.fail(log.read_text())

    phone = testbed.add_phone(3, address=False)
    lease = tmp_path / "dhclient"
    lease.mkdir()
    testbed.popen(
        phone.ns,
        *dhclient.command(lease, phone.ifname, timeout=30, retry=1, once=True),
        log_path=lease / "dhclient.log",
    )
    bound = lease / dhclient.BOUND
    try:
        wait_until(bound.exists, 40, 0.1, what="dhclient bound")
    except AssertionError:
        pytest.fail(f"no lease:\n{resolvers.log.read_text()}")
    env = dhclient.lease_env(bound)
    assert env["new_rfc8910_captive_portal"] == f"https://{NAME}/api/captive"

    answer = dns_query(testbed, phone.ns, GW_LAN_IP, NAME)  # not logged in
    addresses = [a[2] for a in answer["answers"] if a[0] == 1]
    assert addresses == [GW_LAN_IP]

    root = tmp_path / "root.pem"
    root.write_bytes(ca.root.public_bytes(serialization.Encoding.PEM))
    fetched = testbed.run(
        phone.ns,
        "curl", "-sS", "-m", "5", "--cacert", str(root),
        "--resolve", f"{NAME}:443:{addresses[0]}", f"https://{NAME}/api/captive",
        check=False,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr + log.read_text()[-2000:]
    api = json.loads(fetched.stdout)
    assert api["captive"] is True and api["user-portal-url"].startswith(f"https://{NAME}")
    # Trusting nothing else: a client without the root refuses the certificate.
    strict = testbed.run(
        phone.ns, "curl", "-sS", "-m", "5", "--resolve", f"{NAME}:443:{GW_LAN_IP}",
        f"https://{NAME}/api/captive", check=False,
    )  # fmt: skip
    assert strict.returncode != 0
