"""The portal's name and option 114 in the live files (gateway/dnsapply.py, issue #15 item 4):
which values the certificate decides, and the reload step's handling of the TLS portal
(nothing half-applied: a dnsmasq that does not start leaves the TLS portal alone). The real
files, dnsmasq and gateway are in tests/netns/gateway/test_cert_switch.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from gateway import dnsapply
from hotspot import certs, dnsfilter
from hotspot import config as config_mod

NAME = "desa-a.wifi.jambi.test"
CERT = certs.Installed(NAME, dt.datetime(2099, 1, 1), "1f", dt.datetime(2098, 1, 1))


def load(tmp_path, **overrides):
    base = {
        "sync": {
            "upstream_url": "http://127.0.0.1:9",
            "gateway_id": "desa-a",
            "secret": "a-secret-" + "a" * 40,
            "cert_zone": "wifi.jambi.test",
        }
    }
    base["sync"]["cert_dir"] = str(tmp_path / "tls")
    base["dns_filter"] = {"conf_dir": str(tmp_path / "live")}
    return config_mod.load(overrides=config_mod.merge(base, overrides))


def test_the_certificate_decides_the_name_and_the_scheme(tmp_path):
    cfg = load(tmp_path, portal={"hostname": "portal.desa.id"})
    assert dnsapply.portal_of(cfg, None) == (
        "portal.desa.id",
        "http://portal.desa.id:8080/api/captive",
        False,
    )
    assert dnsapply.portal_of(cfg, CERT) == (NAME, f"https://{NAME}/api/captive", True)
    # A configuration loaded while the pair was in force (with_certificate put it in) still
    # falls back to the file's own name, read from its raw tables.
    derived = replace(
        cfg,
        portal=replace(cfg.portal, hostname=NAME, tls_cert=str(tmp_path / "tls" / "cert.pem")),
    )
    assert dnsapply.portal_of(derived, None)[0] == "portal.desa.id"
    # A TLS pair of the file's own: the collector's certificate changes nothing.
    own = load(
        tmp_path,
        portal={"hostname": "portal.desa.id", "tls_cert": "/etc/c.pem", "tls_key": "/etc/k.pem"},
    )
    assert dnsapply.portal_of(own, CERT) == (
        "portal.desa.id",
        "https://portal.desa.id/api/captive",
        True,
    )


def test_a_renewal_is_the_same_generation_an_expiry_is_not(tmp_path):
    cfg = load(tmp_path)

    class Fixed(dnsapply.CertWatch):
        def __init__(self, got):
            super().__init__(cfg)
            self.got = got

        def current(self):
            return self.got

    def gen(got):
        return dnsfilter.generation_id(dnsfilter.render(dnsapply.settings_of(cfg, Fixed(got)), []))

    renewed = certs.Installed(NAME, dt.datetime(2099, 6, 1), "2a", dt.datetime(2099, 5, 1))
    assert gen(CERT) == gen(renewed) != gen(None)


def test_a_failed_dnsmasq_start_leaves_the_tls_portal_alone(tmp_path):
    live = tmp_path / "live"
    plain = dnsfilter.install_generation(live, {"main.conf": "", dnsfilter.PORTAL_FILE: "off\n"})
    dnsfilter.switch_to(live, plain)
    tls = dnsfilter.install_generation(
        live, {"main.conf": "#tls\n", dnsfilter.PORTAL_FILE: f"on {NAME}\n"}
    )
    dnsfilter.request_reload(live, tls, dnsfilter.switch_to(live, tls))
    calls: list[list[str]] = []

    def broken(args: list[str]) -> bool:
        calls.append(args)
        return args[-1] != "dnsmasq.service" or args[0] != "is-active"

    status = dnsapply.reload(live, run=broken, timesyncd_dropin=str(tmp_path / "t.conf"))
    assert status["result"] == "rolled-back" and dnsfilter.current_generation(live) == plain
    assert not [c for c in calls if c[-1] == dnsapply.PORTAL_TLS_UNIT]

    # dnsmasq works: the TLS portal is started, then the same files again only make sure.
    dnsfilter.request_reload(live, tls, dnsfilter.switch_to(live, tls))
    calls.clear()
    status = dnsapply.reload(live, run=lambda a: calls.append(a) or True)
    assert status["result"] == "applied" and status["portal_tls"] == f"on {NAME}"
    assert ["start", dnsapply.PORTAL_TLS_UNIT] in calls
    calls.clear()
    assert dnsapply.reload(live, run=lambda a: calls.append(a) or True)["result"] == "unchanged"
    assert calls == [["start", dnsapply.PORTAL_TLS_UNIT]]
    # back to plain HTTP: stopped
    dnsfilter.request_reload(live, plain, dnsfilter.switch_to(live, plain))
    calls.clear()
    assert dnsapply.reload(live, run=lambda a: calls.append(a) or True)["portal_tls"] == "off"
    assert ["stop", dnsapply.PORTAL_TLS_UNIT] in calls
