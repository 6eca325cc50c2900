"""The portal's HTTPS name follows the certificate by itself (issue #15, item 4): the real
gateway watches ``[sync] cert_dir`` at its tick and writes a new generation of the live
resolver files (gateway/dnsapply.py) with ``host-record=<name>`` and DHCP option 114
``https://<name>/api/captive`` once a pair is in force, back to plain HTTP once it expired;
the reload step (``hotspot gateway dns-reload``, played here with a "systemctl" that restarts
the test's real dnsmasq and records the rest) restarts dnsmasq and starts or stops
``hotspot-portal-tls``. A renewal for the same name changes no file and restarts nothing. A
pair for another name, or whose key is not the certificate's, is ignored and reported.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from gateway.dnsapply import PORTAL_TLS_UNIT
from hotspot import certs, dnsfilter
from tests.netns.gateway.test_dns_filter import Village, addresses, generation_after
from tests.netns.helpers import GW_LAN_IP, dns_query, start_upstream_dns, wait_until
from tests.unit.sync.cert_helpers import ZONE
from tests.unit.sync.test_certs import NOW, LocalCA
from testsupport.testbed import UPSTREAM_IP, portal_settings

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)"
)

GW_ID = "desa-a"
NAME = f"{GW_ID}.{ZONE}"
ANY_IP = "198.51.100.99"


class Recording(Village):
    """The village's dnsmasq; the other units' systemctl calls are recorded."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls: list[list[str]] = []

    def systemctl(self, args: list[str]) -> bool:
        if args[-1] == PORTAL_TLS_UNIT:
            self.calls.append(args)
            return True
        return super().systemctl(args)


def pair(ca: LocalCA, name: str, lifetime: dt.timedelta | None = None):
    """(key PEM, chain) for ``name``: what the sync agent installs."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if lifetime is not None:
        ca.lifetime = now - NOW + lifetime  # LocalCA counts from its module's NOW
    key = certs.new_key()
    chain = certs.check_chain(ca.issue(certs.make_csr(key, name)).encode(), key, name, now)
    ca.lifetime = dt.timedelta(days=90)
    return certs.key_pem(key), chain


def main_conf(live: str, gen: str) -> str:
    return (Path(live) / f"gen-{gen}" / dnsfilter.MAIN_FILE).read_text()


@pytest.fixture
def village(testbed, gateway_factory, tmp_path):
    work = tmp_path / "dns"
    work.mkdir()
    work.chmod(0o755)
    start_upstream_dns(testbed, work, f"--address=/#/{ANY_IP}")
    folder = tmp_path / "tls"
    folder.mkdir()
    gw = gateway_factory(
        {
            "dns_filter": {"conf_dir": str(tmp_path / "live")},
            "dhcp": {
                "range_start": "10.10.0.100",
                "range_end": "10.10.0.150",
                "upstream_dns": [UPSTREAM_IP],
            },
            "wifi": {"enabled": False},
            "portal": portal_settings(tmp_path, workers=1),
            "sync": {
                "upstream_url": "http://127.0.0.1:9",
                "gateway_id": GW_ID,
                "secret": "a-secret-" + "a" * 40,
                "cert_zone": ZONE,
                "cert_dir": str(folder),
            },
        }
    )
    from hotspot import config as config_mod

    cfg = config_mod.load(gw.config_path)
    live = Path(cfg.dns_filter.conf_dir)
    wait_until(lambda: (live / dnsfilter.REQUEST).exists(), 10, what="first generation")
    v = Recording(testbed, cfg, work)
    assert v.start(), (work / "dnsmasq.log").read_text()
    v.gw, v.folder = gw, folder
    yield v
    v.stop()


def certificate(village) -> dict:
    dns = village.gw.call("status")["dns"]
    assert "certificate" in dns, dns
    return dns["certificate"]


@pytest.mark.parametrize("testbed", [1], indirect=True)
def test_the_portal_follows_the_certificate_without_provision(testbed, village, listen):
    (phone,) = testbed.phones
    live = village.cfg.dns_filter.conf_dir
    plain = dnsfilter.current_generation(live)
    text = main_conf(live, plain)
    assert "host-record" not in text
    assert f'dhcp-option=114,"http://{GW_LAN_IP}:' in text
    ca = LocalCA()

    # Abuse: a pair for another gateway's name, then our name with a key that is not the
    # certificate's (a half-copied pair, a hostile file): ignored, reported, nothing changes.
    key, chain = pair(ca, f"desa-b.{ZONE}")
    certs.install(village.folder, key, chain)
    wait_until(lambda: certificate(village)["problem"], 5, what="the other name reported")
    assert certificate(village)["state"] == "none"
    ours, ours_chain = pair(ca, NAME)
    certs.write_atomically(village.folder / certs.CERT_FILE, ours_chain.pem, 0o640)
    wait_until(lambda: "not a certificate for" in (certificate(village)["problem"] or ""), 5)
    assert dnsfilter.current_generation(live) == plain

    # The key arrives: a new generation with the name and https, the TLS portal started.
    certs.write_atomically(village.folder / certs.KEY_FILE, ours, certs.KEY_MODE)
    tls = generation_after(village, plain)
    text = main_conf(live, tls)
    assert f"host-record={NAME},{GW_LAN_IP}\n" in text
    assert f'dhcp-option=114,"https://{NAME}/api/captive"\n' in text
    restarts = village.restarts
    status = village.reload()
    assert status["result"] == "applied" and status["portal_tls"] == f"on {NAME}", status
    assert village.restarts == restarts + 1
    assert village.calls[-1][0] in ("start", "restart")
    assert addresses(dns_query(testbed, phone.ns, GW_LAN_IP, NAME)) == [GW_LAN_IP]
    assert certificate(village)["problem"] is None
    # The gateway started without a certificate: the HTTPS port is open to the TLS portal
    # all the same (a stand-in listens there; a phone before login reaches it).
    https = listen(testbed.gw, "tcp", GW_LAN_IP, village.cfg.portal.https_port)
    testbed.run(
        phone.ns, "curl", "-s", "-m", "3", f"http://{GW_LAN_IP}:443/api/captive", check=False
    )
    assert https.wait_received()

    # A renewal for the same name (new key, new serial, short-lived): no new generation,
    # dnsmasq is not restarted, the TLS portal is left running (it reads the pair per
    # connection).
    key, chain = pair(ca, NAME, lifetime=dt.timedelta(seconds=6))
    certs.install(village.folder, key, chain)
    wait_until(lambda: certificate(village)["serial"] == chain.serial, 5, what="renewal seen")
    assert dnsfilter.current_generation(live) == tls
    calls = len(village.calls)
    assert village.reload()["result"] == "unchanged"
    assert village.restarts == restarts + 1
    assert all(c[0] == "start" for c in village.calls[calls:])  # "make sure": no restart

    # It expires (the agent could not renew in time): plain HTTP again, the TLS portal stopped.
    back = generation_after(village, tls, timeout=15)
    assert back == plain  # the same files as before the certificate
    assert "host-record" not in main_conf(live, back)
    status = village.reload()
    assert status["result"] == "applied" and status["portal_tls"] == "off", status
    assert village.calls[-1] == ["stop", PORTAL_TLS_UNIT]
    assert certificate(village)["state"] == "expired"
    assert GW_LAN_IP not in addresses(dns_query(testbed, phone.ns, GW_LAN_IP, NAME))
