"""A full disk at the captive portal (issue #11, item 4): a login that cannot be written —
by the gateway or by the portal itself — gets a friendly page in Indonesian (503, "try
again later"), never a 500 or a traceback, and loses nothing; once there is room the same
form works."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot.model import Voucher
from tests.unit.storage_full import FullStorage, storage_full_error

PAUSED = "Sambungan baru sedang ditunda"
PAUSED_EN = "New connections are paused"


def assert_paused(resp, words=PAUSED):
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503, body[:500]
    assert words in body and "Traceback" not in body
    assert resp.headers["Retry-After"] == "60"


@pytest.fixture
def full(db):
    return FullStorage(db)


def test_a_login_the_gateway_cannot_write_gets_the_paused_page(phone, engine, monkeypatch, gw):
    def authorize(**_kw):
        raise storage_full_error()

    monkeypatch.setattr(engine, "authorize", authorize)
    assert_paused(phone.form("/accept"))
    assert_paused(phone.form("/accept?lang=en", page="/?lang=en"), PAUSED_EN)
    monkeypatch.undo()
    assert phone.form("/accept").status_code == 303
    assert gw.call("client", ip=phone.ip)["session"]["tier"] == "free"


def test_a_login_the_portal_cannot_write_gets_the_same_page(phone, full, gw):
    full.full = True
    assert_paused(phone.form("/accept"))
    assert gw.call("client", ip=phone.ip)["session"] is None
    full.full = False
    assert phone.form("/accept").status_code == 303
    assert gw.call("client", ip=phone.ip)["session"] is not None


def test_a_voucher_on_a_full_disk_is_not_spent(phone, full, batch, db, gw, vouchers):
    (code,) = batch("harian", 1)
    full.full = True
    assert_paused(phone.form("/voucher", {"code": code}))
    with Session(db) as s:
        assert s.scalar(select(Voucher.state)) == "new"
    full.full = False
    assert phone.form("/voucher", {"code": code}).status_code == 303
    assert gw.call("client", ip=phone.ip)["session"]["voucher_id"] is not None
