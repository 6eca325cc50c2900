"""The villagers' journeys through the portal, with the real session engine behind a fake
control-socket client (tests/unit/portal/fakes.py)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from hotspot.config import DEFAULTS
from hotspot.units import MB
from portal.intercept import PROBES
from portal.state import state
from tests.unit.portal.conftest import BASE, OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC, Phone


def text(resp) -> str:
    return resp.get_data(as_text=True)


def location(resp) -> str:
    return resp.headers["Location"]


def probe(phone, host, path, method="GET", **kw):
    return phone.client.open(
        path, method=method, base_url=f"http://{host}", environ_base={"REMOTE_ADDR": phone.ip}, **kw
    )


# -- operating-system detection ----------------------------------------------------------------


def test_every_known_probe_host_resolves_before_login():
    """A probe host the walled resolver does not know gets NXDOMAIN, and its phone never
    sees the redirect: the intercept's list of probes and the resolver's must agree."""
    walled = set(DEFAULTS["network"]["captive_probe_hosts"])
    assert {host for host, _ in PROBES.values()} <= walled


@pytest.mark.parametrize("os_name", sorted(PROBES))
def test_every_probe_is_redirected_to_the_portal_with_its_url(phone, os_name):
    host, path = PROBES[os_name]
    resp = probe(phone, host, path)
    assert resp.status_code == 302  # never 204, never an (empty) 200
    loc = location(resp)
    assert loc.startswith(BASE + "/?")
    assert parse_qs(urlsplit(loc).query)["to"] == [f"http://{host}{path}"]
    assert resp.headers["Connection"] == "close"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.data  # a body with a link, for clients that do not follow redirects
    head = probe(phone, host, path, method="HEAD")
    assert head.status_code == 302 and location(head).startswith(BASE)


def test_probe_redirect_needs_no_gateway_call(phone, gw):
    gw.calls.clear()
    for _ in range(20):
        probe(phone, "connectivitycheck.gstatic.com", "/generate_204")
    assert gw.calls == []


def test_app_posts_to_other_hosts_get_511(phone):
    resp = probe(phone, "api.example.com", "/v1/beacon", method="POST", data=b"x" * 100)
    assert resp.status_code == 511
    assert resp.headers["Connection"] == "close"
    assert BASE + "/" in text(resp)


def test_forged_host_headers_cannot_move_redirects(phone):
    resp = probe(
        phone,
        "evil.example",
        "/",
        headers={"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"},
    )
    assert location(resp).startswith(BASE + "/")
    # On the portal's own address, a POST's redirect is built from the configuration too.
    resp = phone.form(
        "/accept", headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    )
    assert resp.status_code == 303
    assert location(resp).startswith(BASE + "/ok")


def test_the_portal_answers_at_the_gateway_address_on_port_80_too(app):
    resp = Phone(app, base="http://10.10.0.1").get("/")  # NATed from port 80 before login
    assert resp.status_code == 200 and "Terima & Sambungkan" in text(resp)


# -- splash and free tier ----------------------------------------------------------------------


def test_splash_in_indonesian(phone):
    resp = phone.get("/")
    page = text(resp)
    assert resp.status_code == 200
    assert '<html lang="id">' in page
    assert "Desa Sungai Duren" in page
    assert "Terima & Sambungkan" in page
    assert "Kecepatan sampai 1 Mbps" in page and "300 MB data per hari" in page
    assert "2 jam per hari" in page
    assert "Rp 5.000" in page and "Harian" in page  # the price list
    assert "Pak Budi, WA 0812-0000-0000" in page  # BUMDes contact
    assert 'name="code"' in page


def test_english_from_accept_language_and_from_the_switch(phone, app):
    page = text(phone.get("/", headers={"Accept-Language": "en-US,en;q=0.9"}))
    assert '<html lang="en">' in page and "Accept & connect" in page
    assert "Rp 5,000" in page
    resp = phone.get("/?lang=en")
    assert '<html lang="en">' in text(resp)
    cookie = resp.headers["Set-Cookie"]
    assert "lang=en" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert '<html lang="en">' in text(phone.get("/"))  # remembered
    assert '<html lang="id">' in text(phone.get("/?lang=id"))
    fresh = Phone(app)
    assert '<html lang="id">' in text(fresh.get("/", headers={"Accept-Language": "fr"}))


def test_accept_then_back_to_the_page_first_asked_for(phone, gw):
    first = location(probe(phone, "example.org", "/berita?hari=ini"))
    assert "Terima" in text(phone.get(first))
    resp = phone.form("/accept", page=first)
    assert resp.status_code == 303
    ok = location(resp)
    assert ok.startswith(BASE + "/ok?")
    page = text(phone.get(ok))
    assert "Anda sudah tersambung" in page
    link = re.search(r'id="continue" href="([^"]+)"', page).group(1)
    assert link.replace("&amp;", "&") == "http://example.org/berita?hari=ini"
    assert 'http-equiv="refresh"' in page
    (auth,) = gw.ops("authorize")
    # the MAC the gateway gave the splash (tests/unit/portal/test_login_round_trips.py)
    assert auth == {
        "op": "authorize",
        "ip": PHONE_IP,
        "tier": "free",
        "source": "free",
        "expect_mac": PHONE_MAC,
    }
    session = gw.call("client", ip=PHONE_IP)["session"]
    assert session["mac"] == PHONE_MAC and session["tier"] == "free"


def test_nothing_in_the_request_names_another_device(phone, gw):
    resp = phone.form(
        "/accept",
        {"ip": OTHER_IP, "mac": OTHER_MAC},
        headers={"X-Forwarded-For": OTHER_IP, "X-Real-IP": OTHER_IP},
    )
    assert resp.status_code == 303
    assert [a["ip"] for a in gw.ops("authorize")] == [PHONE_IP]
    assert all("mac" not in a for a in gw.ops("authorize"))
    # the only MAC named is the gateway's own answer for this address
    assert [a.get("expect_mac") for a in gw.ops("authorize")] == [PHONE_MAC]
    assert gw.call("client", ip=OTHER_IP)["session"] is None
    assert gw.call("client", ip=PHONE_IP)["session"]["mac"] == PHONE_MAC


@pytest.mark.parametrize(
    "to",
    [
        "http://evil.example/",
        "javascript:alert(1)",
        "//evil.example/",
        "/relative",
        "data:text/html,hi",
        "ftp://evil.example/",
    ],
)
def test_no_open_redirect(phone, app, to):
    phone.form("/accept")
    signer = state(app).signer
    forged = {"to": to, "t": "1", "s": "AAAA"}
    assert to not in text(phone.get("/ok", query_string=forged))
    # Even correctly signed, only http(s) URLs with a host are ever linked.
    signed = signer.sign(PHONE_IP, to)
    page = text(phone.get("/ok", query_string=signed))
    if to == "http://evil.example/":
        assert 'id="continue" href="http://evil.example/"' in page  # really requested: fine
    else:
        assert 'id="continue"' not in page and to not in page


def test_continue_link_is_bound_to_the_device_it_was_made_for(phone, other_phone, app):
    signed = state(app).signer.sign(OTHER_IP, "http://evil.example/")
    phone.form("/accept")
    assert "evil.example" not in text(phone.get("/ok", query_string=signed))


def test_forms_need_the_csrf_token(phone, gw):
    phone.get("/")
    resp = phone.post("/accept", data={})
    assert resp.status_code == 400
    assert "kedaluwarsa" in text(resp)
    resp = phone.post("/accept", data={"csrf_token": "forged"})
    assert resp.status_code == 400
    assert gw.ops("authorize") == []


# -- status, logout, allowance used up, blocked ----------------------------------------------------


def test_status_page_and_logout(phone, gw):
    phone.form("/accept")
    page = text(phone.get("/"))
    assert "Sambungan Anda" in page
    assert "Gratis" in page
    assert "1 jam" in page  # time left: the free session's hour
    assert "300 MB" in page  # data left today
    assert "1 Mbps unduh, 512 kbps unggah" in page
    assert "Putuskan" in page
    assert "11.00 WIB" in page  # 03:00 UTC + 1 h, in Jakarta
    resp = phone.form("/logout")
    assert resp.status_code == 303
    assert gw.ops("deauthorize")[-1] == {"op": "deauthorize", "ip": PHONE_IP, "reason": "logout"}
    page = text(phone.get(location(resp)))
    assert "Sambungan sudah diputus" in page and "Terima & Sambungkan" in page
    assert phone.form("/logout").status_code == 303  # twice: harmless


def test_allowance_used_up(phone, gw, engine, datapath):
    phone.form("/accept")
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)
    page = text(phone.get("/"))
    assert "Jatah gratis hari ini sudah habis" in page
    assert "00.00 WIB (besok)" in page  # local midnight in Asia/Jakarta
    assert 'name="code"' in page and "Rp 5.000" in page  # how to buy a voucher
    resp = phone.form("/accept")  # an old tab
    assert resp.status_code == 403 and "sudah habis" in text(resp)
    assert "12:00 AM" not in text(phone.get("/?lang=en")) and "00:00 WIB (tomorrow)" in text(
        phone.get("/?lang=en")
    )


def test_blocked_device(phone, engine):
    hidden = phone.hidden()
    engine.block(mac=PHONE_MAC, reason="test")
    resp = phone.get("/")
    assert resp.status_code == 403 and "diblokir" in text(resp)
    assert 'name="code"' not in text(resp)
    resp = phone.post("/accept", data=hidden)  # a tab opened before the block
    assert resp.status_code == 403 and "diblokir" in text(resp)


def test_unknown_device(app, datapath):
    stranger = Phone(app, ip="10.10.0.99")  # no neighbour entry: the gateway cannot tell its MAC
    assert stranger.get("/").status_code == 200  # the splash is fine
    resp = stranger.form("/accept")
    assert resp.status_code == 400 and "tidak dikenali" in text(resp)
    resp = Phone(app, ip="192.0.2.7").get("/")  # not even on the LAN
    assert resp.status_code == 400 and "Traceback" not in text(resp)


# -- failure modes -------------------------------------------------------------------------------


def test_gateway_down_is_a_friendly_503(phone, gw):
    hidden = phone.hidden()
    gw.down = True
    for resp in (
        phone.get("/"),
        phone.post("/accept", data=hidden),
        phone.post("/voucher", data={**hidden, "code": "ABCD-EFGH-JK"}),
    ):
        assert resp.status_code == 503
        assert "sedang sibuk" in text(resp) and "Traceback" not in text(resp)
        assert resp.headers["Retry-After"] == "10"
    assert phone.get("/info").status_code == 200  # needs no gateway


def test_unexpected_errors_show_no_stack_trace(phone, gw, monkeypatch):
    def boom(request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gw, "send", boom)
    resp = phone.get("/")
    assert resp.status_code == 500
    assert "secret internals" not in text(resp) and "Traceback" not in text(resp)
    assert "Terjadi kesalahan" in text(resp)


def test_unknown_routes_get_a_small_404(phone):
    resp = phone.get("/wp-admin/setup.php")
    assert resp.status_code == 404
    assert len(resp.data) < 5000 and "Halaman tidak ditemukan" in text(resp)
    assert (
        phone.client.delete("/", base_url=BASE, environ_base={"REMOTE_ADDR": PHONE_IP}).status_code
        == 405
    )


def test_oversized_bodies_are_refused(phone):
    resp = phone.post("/voucher", data={"code": "A" * 40000})
    assert resp.status_code == 413
    assert "terlalu besar" in text(resp)


# -- security headers, cookies, escaping ------------------------------------------------------------


def test_security_headers_and_cookie_flags(phone):
    resp = phone.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp  # no script at all
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    cookies = {c.split("=", 1)[0]: c for c in resp.headers.getlist("Set-Cookie")}
    cookie = cookies["hs"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    device = cookies["hotspot_device"]  # issue #10: the long-lived signed device cookie
    assert "HttpOnly" in device and "SameSite=Lax" in device and "Max-Age=34560000" in device
    css = phone.get(re.search(r'href="(/static/portal\.css[^"]*)"', text(resp)).group(1))
    assert css.status_code == 200 and "max-age" in css.headers["Cache-Control"]


def test_config_text_is_escaped_everywhere(cfg, gw, db, key, clock, packages):
    import dataclasses

    from hotspot.vouchers.packages import sync_packages
    from portal import create_app
    from portal.startup import prepare

    evil = '<script>alert("x")</script>'
    portal_cfg = dataclasses.replace(cfg.portal, contact=evil, terms=evil)
    village = dataclasses.replace(cfg.village, name=evil)
    pkg = dataclasses.replace(cfg.packages["harian"], title=evil)
    bad = dataclasses.replace(
        cfg, portal=portal_cfg, village=village, packages={**cfg.packages, "harian": pkg}
    )
    sync_packages(db, bad.packages.values())
    app = create_app(
        state=prepare(bad, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock)
    )
    phone = Phone(app)
    pages = [phone.get("/"), phone.get("/info"), phone.get("/nope")]
    phone.form("/accept")
    pages += [phone.get("/"), phone.get("/ok")]
    for resp in pages:
        page = text(resp)
        assert "<script" not in page, resp.request.path
        assert "&lt;script&gt;" in page


def test_templates_have_no_inline_script_or_style():
    from pathlib import Path

    import portal

    root = Path(portal.__file__).parent
    for path in (root / "templates").glob("*.html"):
        src = path.read_text()
        assert "<script" not in src and "<style" not in src and " style=" not in src, path
        assert not re.search(r"\son[a-z]+=", src), path
        assert "|safe" not in src.replace(" ", ""), path
    assert "http" not in (root / "static" / "portal.css").read_text()  # no external assets


# -- RFC 8908 ----------------------------------------------------------------------------------


def test_captive_portal_api(phone):
    resp = phone.get("/api/captive", headers={"Accept": "application/captive+json"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/captive+json"
    assert resp.headers["Cache-Control"] == "private"
    assert resp.json == {
        "captive": True,
        "user-portal-url": BASE + "/",
        "venue-info-url": BASE + "/info",
    }
    phone.form("/accept")
    body = phone.get("/api/captive").json
    assert body["captive"] is False
    assert body["seconds-remaining"] == 3600
    assert body["bytes-remaining"] == 300 * MB
    assert body["can-extend-session"] is True


def test_captive_api_when_the_gateway_is_down(phone, gw):
    gw.down = True
    resp = phone.get("/api/captive")
    assert resp.status_code == 503 and resp.json["captive"] is True


def test_captive_api_with_hostname_and_certificate(cfg, gw, db, key, clock, packages):
    import dataclasses

    from portal import create_app
    from portal.startup import prepare
    from portal.urls import PortalUrls

    p = dataclasses.replace(
        cfg.portal,
        hostname="wifi.desa.jambiprov.go.id",
        tls_cert="/etc/hotspot/tls.crt",
        tls_key="/etc/hotspot/tls.key",
    )
    tls_cfg = dataclasses.replace(cfg, portal=p)
    urls = PortalUrls.from_config(tls_cfg)
    assert urls.api_url == "https://wifi.desa.jambiprov.go.id/api/captive"
    assert urls.captive_base == BASE  # intercepted HTTP still goes to the address
    app = create_app(
        state=prepare(
            tls_cfg, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock
        )
    )
    https = Phone(app, base="https://wifi.desa.jambiprov.go.id")
    body = https.get("/api/captive").json
    assert body["user-portal-url"] == "https://wifi.desa.jambiprov.go.id/"
    assert body["venue-info-url"] == "https://wifi.desa.jambiprov.go.id/info"
    # A form posted over HTTPS is answered on the same origin.
    resp = https.form("/accept")
    assert location(resp).startswith("https://wifi.desa.jambiprov.go.id/ok")
    assert location(Phone(app).form("/accept")).startswith(BASE + "/ok")


# -- pages: weight, assets, accessibility -----------------------------------------------------------


def _pages(phone, engine, datapath):
    out = {
        "splash": phone.get("/"),
        "info": phone.get("/info"),
        "404": phone.get("/nope"),
        "splash-en": phone.get("/?lang=en"),
    }
    phone.form("/accept")
    out["success"] = phone.get("/ok")
    out["status"] = phone.get("/")
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)
    out["exhausted"] = phone.get("/")
    out["voucher-error"] = phone.form("/voucher", {"code": "2345-6789-AB"})
    return out


def test_every_page_is_small_with_all_assets_from_the_portal(phone, engine, datapath):
    for name, resp in _pages(phone, engine, datapath).items():
        page = text(resp)
        assets = re.findall(r'(?:href|src)="([^"]+)"', page)
        weight = len(resp.data)
        for url in assets:
            if url.startswith("/static/"):
                weight += len(phone.get(url).data)
            else:
                assert (
                    not url.startswith(("http://", "https://", "//"))
                    or url.startswith(BASE)
                    or 'id="continue"' in page
                ), (name, url)
        assert weight < 30_000, (name, weight)


def test_basic_accessibility(phone, engine, datapath):
    for name, resp in _pages(phone, engine, datapath).items():
        page = text(resp)
        assert re.search(r'<html lang="(id|en)">', page), name
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert "<title>" in page and "<h1" in page and "<main>" in page
        for field in re.findall(r"<input ([^>]*)>", page):
            if 'type="hidden"' in field:
                continue
            fid = re.search(r'id="([^"]+)"', field).group(1)
            assert f'<label for="{fid}">' in page, (name, field)
        for img in re.findall(r"<img ([^>]*)>", page):
            assert "alt=" in img
        for button in re.findall(r"<button[^>]*>(.*?)</button>", page):
            assert button.strip()


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


@pytest.mark.parametrize(
    "fg, bg",
    [
        ("#1b1f23", "#eef3f1"),
        ("#1b1f23", "#ffffff"),
        ("#ffffff", "#0b5d43"),
        ("#0b5d43", "#ffffff"),
        ("#0a58a8", "#ffffff"),
        ("#4a545e", "#ffffff"),
        ("#4a545e", "#eef3f1"),
        ("#7a1c14", "#fdecea"),
        ("#a3261c", "#ffffff"),
        ("#1b1f23", "#e7f1fb"),
    ],
)
def test_colour_contrast_meets_wcag_aa(fg, bg):
    from pathlib import Path

    import portal

    css = (Path(portal.__file__).parent / "static" / "portal.css").read_text()
    assert fg in css or fg == "#ffffff"
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5


def test_head_and_favicon(phone):
    assert phone.head("/").status_code == 200
    assert phone.get("/favicon.ico").status_code == 204
