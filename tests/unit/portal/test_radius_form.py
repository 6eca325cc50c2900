"""The villagers' "Punya akun?" form (POST /radius) on the real app, the real engine behind
the real dispatcher, and a RADIUS server stood in for by loopback replies."""

from __future__ import annotations

import pytest

from gateway.radius import RadiusService
from hotspot.config import RadiusServer
from portal import create_app
from portal.radius_login import RadiusLogins
from portal.startup import prepare
from tests.unit.hotspot.radius.test_packets import SECRET, serve
from tests.unit.portal.conftest import PHONE_MAC, Phone
from tests.unit.portal.test_radius_login import accept, reject


@pytest.fixture
def radius_app(cfg, gw, db, key, clock, packages, engine, tmp_path):
    def make(replies):
        from dataclasses import replace

        port = serve(replies)
        radius_cfg = replace(
            cfg.radius,
            enabled=True,
            servers=(RadiusServer("127.0.0.1", port),),
            timeout_seconds=0.3,
            attempts=1,
        )
        full = replace(cfg, radius=radius_cfg)
        gw.dispatcher.radius = RadiusService(full, db, engine, SECRET, clock=clock)
        state = prepare(cfg, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock)
        state.radius = RadiusLogins(full, db, SECRET, b"c" * 32, clock=clock)
        app = create_app(state=state)
        app.config["TESTING"] = True
        return Phone(app)

    return make


def test_the_form_is_there_only_with_radius_on(phone, radius_app):
    assert 'action="/radius"' not in phone.get("/").get_data(as_text=True)
    page = radius_app([lambda d: None]).get("/").get_data(as_text=True)
    assert 'action="/radius"' in page and "Punya akun?" in page
    assert "Nama pengguna atau kode" in page


def test_accept_opens_a_radius_session(radius_app, gw, engine):
    phone = radius_app([accept])
    resp = phone.form("/radius", {"username": "budi", "password": "rahasia"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/ok")
    sess = engine.client(mac=PHONE_MAC)["session"]
    assert sess["source"] == "radius" and sess["down_kbps"] == 2000
    [call] = gw.ops("radius-authorize")
    assert call["username"] == "budi" and call["classes"] == "6b656c6173"
    ok = phone.get("/ok").get_data(as_text=True)
    # An account, not a voucher: the success page says who is logged in.
    assert "Anda masuk sebagai budi sampai" in ok and "Voucher" not in ok


def test_reject_silence_and_an_empty_name_are_clear_pages(radius_app, engine):
    phone = radius_app([reject, lambda d: None])
    resp = phone.form("/radius", {"username": "budi", "password": "salah"})
    assert resp.status_code == 401
    assert "Nama pengguna atau kata sandi salah" in resp.get_data(as_text=True)
    resp = phone.form("/radius", {"username": "budi", "password": "rahasia"})
    assert resp.status_code == 503
    assert "Server akun tidak dapat dihubungi" in resp.get_data(as_text=True)
    resp = phone.form("/radius", {"username": "  "})
    assert resp.status_code == 400
    assert engine.client(mac=PHONE_MAC)["session"] is None


def test_guessing_is_braked_before_the_server_is_asked(radius_app):
    phone = radius_app([reject] * 5)
    statuses = [phone.form("/radius", {"username": f"TEBAK{i}"}).status_code for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2
