"""Issue #10.12: no console over plain HTTP on the villagers' open WiFi.

The attack: on an open SSID every frame is readable by anyone nearby (a laptop in monitor
mode): the login form's password, the session cookie and the voucher codes on the pages.
Over plain HTTP from the LAN the console now answers only with a page that says where to
open it; the login form is not served and a posted password is refused before it is read.
"""

from __future__ import annotations

import pytest

from tests.unit.portal.operator.conftest import ADMIN_PW, BASE, KIOSK_IP, Console, text


@pytest.fixture
def managed(cfg):
    """A gateway provisioned with the operator SSID and HTTPS for portal.desa.id."""
    from hotspot.config import ManagementConfig

    mgmt = ManagementConfig(
        address="192.168.88.1/24",
        ssid="Operator BUMDes",
        passphrase="kios-aman-2026",
        wired_port="eth1",
    )
    object.__setattr__(cfg, "management", mgmt)
    object.__setattr__(cfg.portal, "hostname", "portal.desa.id")
    object.__setattr__(cfg.portal, "tls_cert", "/etc/hotspot/tls/cert.pem")
    object.__setattr__(cfg.portal, "tls_key", "/etc/hotspot/tls/key.pem")
    return cfg


def test_plain_http_from_the_open_lan_gets_the_way_not_the_form(managed, app, accounts):
    c = Console(app, ip=KIOSK_IP, base=BASE)
    for path in ("/operator/", "/operator/login", "/operator/sell"):
        r = c.get(path)
        body = r.get_data(as_text=True)
        assert r.status_code == 403, path
        assert 'name="password"' not in body and "hs_op" not in r.headers.get("Set-Cookie", "")
        page = text(r)
        assert "Buka konsol di jaringan operator" in page
        assert "Operator BUMDes" in page and "http://10.10.0.1:8080/operator/" in page
        assert "https://portal.desa.id/operator/" in page and "eth1" in page
    en = text(c.get("/operator/login?lang=en"))
    assert "Open the console on the operator network" in en


def test_a_password_posted_over_plain_http_is_refused(managed, app, accounts):
    c = Console(app, ip=KIOSK_IP, base=BASE)
    r = c.post("/operator/login", data={"name": "budi", "password": ADMIN_PW})
    assert r.status_code in (400, 403)
    assert "hs_op" not in r.headers.get("Set-Cookie", "")


def test_without_a_management_network_the_page_says_ask_the_technician(app, accounts):
    r = Console(app, ip=KIOSK_IP, base=BASE).get("/operator/login")
    assert r.status_code == 403 and "teknisi" in text(r)


def test_https_on_the_lan_serves_the_console_with_secure_cookies(managed, app, accounts):
    c = Console(app, ip=KIOSK_IP, base="https://portal.desa.id")
    assert 'name="password"' in c.get("/operator/login").get_data(as_text=True)
    r = c.login("budi", ADMIN_PW)
    cookies = r.headers.getlist("Set-Cookie")
    assert {x.split("=", 1)[0] for x in cookies} >= {"hs_op", "hs_opdev"}
    assert all("Secure" in x for x in cookies), cookies
    assert c.get("/operator/").status_code == 200


def test_the_management_network_gets_the_console_over_plain_http(managed, app, accounts):
    c = Console(app, ip="192.168.88.20", base=BASE)
    r = c.login("budi", ADMIN_PW)
    assert all("Secure" not in x for x in r.headers.getlist("Set-Cookie"))
    assert c.get("/operator/").status_code == 200


def test_the_old_behaviour_is_an_explicit_choice(app, accounts, cfg):
    object.__setattr__(cfg.operator, "lan_plain_http", True)
    Console(app, ip=KIOSK_IP, base=BASE).login("budi", ADMIN_PW)
