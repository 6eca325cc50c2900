"""Speed schedules (issue #13, item 6) as people see them: the villager's status page says
the speed in force and until when; the console's online list too, with the tiers' schedules
(read-only: they are set in the configuration file)."""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot import config as config_mod
from tests.unit.conftest import device_overrides
from tests.unit.portal.conftest import PACKAGES, PHONE_IP, PHONE_MAC
from tests.unit.portal.operator.conftest import KASIR_PW, Console, text

NIGHT = {"from": "22:00", "to": "05:00", "down_kbps": 8000, "up_kbps": 3000}
SCHOOL = {"from": "07:00", "to": "13:00", "down_kbps": 256, "up_kbps": 128}


@pytest.fixture
def cfg(tmp_path):
    overrides = device_overrides(tmp_path)
    overrides["tiers"]["premium"]["schedule"] = [NIGHT]
    overrides["tiers"]["free"] = {"schedule": [SCHOOL]}
    return config_mod.load(
        overrides={
            **overrides,
            "portal": {
                "secret_key_file": str(tmp_path / "portal.secret"),
                "voucher_key_file": str(tmp_path / "voucher.key"),
            },
            "packages": PACKAGES,
        }
    )


def at_wib(clock, hour, minute=0, day=28):
    local = dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    clock.now = local.astimezone(dt.UTC).replace(tzinfo=None)


def test_status_page_shows_the_boost_while_it_is_on(phone, batch, engine, clock):
    phone.form("/voucher", {"code": batch("harian", 1)[0]})  # 10:00 WIB: the day's rates
    page = text(phone.get("/"))
    assert "5 Mbps unduh" in page and "Kecepatan bonus" not in page
    at_wib(clock, 23, 0)
    engine.tick()
    page = text(phone.get("/"))
    assert "8 Mbps unduh, 3 Mbps unggah" in page
    assert "Kecepatan bonus sampai 05.00 WIB (besok)" in page
    assert "Boosted speed until 05:00 WIB (tomorrow)" in text(phone.get("/?lang=en"))
    phone.get("/?lang=id")
    at_wib(clock, 5, 0, day=29)
    engine.tick()
    page = text(phone.get("/"))
    assert "5 Mbps unduh" in page and "Kecepatan bonus" not in page


def test_a_slower_free_tier_during_school_hours_says_so(phone):
    phone.form("/accept")  # 10:00 WIB: inside the school window
    page = text(phone.get("/"))
    assert "256 kbps unduh" in page
    assert "Kecepatan dikurangi sampai 13.00 WIB" in page


def test_console_lists_the_speed_and_the_schedules(app, accounts, phone, batch, gw, clock):
    phone.form("/voucher", {"code": batch("harian", 1)[0]})
    at_wib(clock, 23, 0)
    gw.engine.tick()
    kasir = Console(app, ip="10.10.0.51")
    kasir.login("siti", KASIR_PW)
    body = text(kasir.get("/operator/sessions"))
    assert "batas 8 Mbps · Kecepatan bonus sampai 05.00 WIB (besok)" in body
    assert "Jadwal kecepatan" in body and "konsol hanya menampilkannya" in body
    assert "22.00–05.00 WIB (sekarang) 8 Mbps / 3 Mbps" in body
    assert "Gratis jam lainnya (sekarang) 1 Mbps / 512 kbps" in body
    assert "07.00–13.00 WIB 256 kbps / 128 kbps" in body
    # The console only shows the schedules: there is nothing to post to.
    for path in ("/operator/schedules", "/operator/sessions/speed"):
        assert kasir.post(path, data={"down_kbps": "99999"}).status_code in (400, 403, 404, 405)
    assert gw.call("client", ip=PHONE_IP)["session"]["down_kbps"] == 8000
    assert gw.call("client", ip=PHONE_IP)["mac"] == PHONE_MAC
