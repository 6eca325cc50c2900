"""The portal while the village's internet is down (issue #11, item 3): the splash, status
and used-up pages say so in Indonesian (English on request) with the time it went down;
the free tier, vouchers and the OS probes keep working; when the gateway's monitor closes
the outage the notice goes away. The console's overview shows the line as down."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot.model_uplink import OutageCause, UplinkOutage
from portal import state as state_mod
from tests.unit.portal.test_captive import location, probe, text

DOWN = "Sambungan internet desa sedang terputus sejak 09.30 WIB"
DOWN_EN = "The village's internet link is down since 09:30 WIB"


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setattr(state_mod, "UPLINK_TTL", 0.0)


@pytest.fixture
def outage(db, clock):
    """The gateway's monitor saw the internet go at 02:30 UTC (09:30 WIB)."""
    with Session(db) as s, s.begin():
        s.add(UplinkOutage(started_at=clock.now - dt.timedelta(minutes=30), cause="unreachable"))


def end_outage(db, clock):
    with Session(db) as s, s.begin():
        s.scalars(select(UplinkOutage)).one().ended_at = clock.now


def test_no_notice_while_the_internet_is_there(phone):
    assert "terputus" not in text(phone.get("/"))


def test_the_splash_says_the_villages_link_is_down(phone, outage):
    page = text(phone.get("/"))
    assert DOWN in page and "WiFi dan halaman ini tetap berfungsi" in page
    assert "Terima & Sambungkan" in page  # the page works as always
    assert DOWN_EN in text(phone.get("/?lang=en"))


def test_free_tier_and_status_page_during_the_outage(phone, gw, outage, db, clock):
    resp = phone.form("/accept")
    assert resp.status_code == 303
    assert gw.call("client", ip=phone.ip)["session"]["tier"] == "free"
    page = text(phone.get("/status"))
    assert "Sambungan Anda" in page and DOWN in page
    end_outage(db, clock)
    page = text(phone.get("/status"))
    assert "Sambungan Anda" in page and "terputus" not in page


def test_a_voucher_is_redeemed_during_the_outage(phone, gw, outage, batch, vouchers):
    (code,) = batch("harian", 1)
    resp = phone.form("/voucher", {"code": code})
    assert resp.status_code == 303
    assert gw.call("client", ip=phone.ip)["session"]["voucher_id"] is not None
    assert DOWN in text(phone.get("/status"))


def test_os_probes_still_get_the_portal(phone, outage):
    resp = probe(phone, "connectivitycheck.gstatic.com", "/generate_204")
    assert resp.status_code == 302 and "/?" in location(resp)
    assert DOWN in text(phone.get(location(resp).split(phone.base, 1)[1]))


def test_an_unreadable_outage_table_shows_the_page_without_a_notice(phone, db, monkeypatch):
    from hotspot import uplink

    def broken(*_a, **_k):
        from sqlalchemy.exc import OperationalError

        raise OperationalError("SELECT", {}, Exception("no such table: uplink_outage"))

    monkeypatch.setattr(uplink, "Session", broken)
    resp = phone.get("/")
    assert resp.status_code == 200 and "terputus" not in text(resp)


def test_a_link_outage_reads_the_same_to_villagers(phone, db, clock):
    with Session(db) as s, s.begin():
        s.add(UplinkOutage(started_at=clock.now, cause=OutageCause.LINK))
    assert "Sambungan internet desa sedang terputus sejak 10.00 WIB" in text(phone.get("/"))
