"""Announcements in Chromium (issue #15 item 3), in a simulated village (network namespaces,
root): the real gateway and portal, Chromium inside the phones' namespaces.

``test_an_announcement_from_the_console_shows_on_the_splash_until_its_end``: the admin, on
the kiosk's laptop on the operator network, enters a notice (in village time, WIB) with a long
link and a bit of HTML in it; a villager's phone (360 px, JavaScript off) asking for a page on
the internet is sent to the splash by the gateway's NAT, and the splash shows the notice — the
HTML as text, the long link wrapped inside the screen, in English on the English page. The
wall clock of the gateway and the portal then passes the notice's end (the test clock shift,
``HOTSPOT_TEST_CLOCK_SHIFT_FILE``: no waiting, the machine's clock untouched): the next
splash has no notice.

Screenshots under artifacts/<test name>/.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest

from hotspot.timeutil import TEST_CLOCK_SHIFT_ENV
from tests.browser.conftest import (
    PORTAL,
    launch,
    page_width,
    phone_context,
    shot,
    simulated_village,
    village_marks,
)
from tests.browser.test_operator import _operator_network
from testsupport.testbed import UPSTREAM_IP

pytestmark = village_marks()

ADMIN_PW = "Sungai-Duren-77"
WIB = zoneinfo.ZoneInfo("Asia/Jakarta")
LINK = "https://puskesmas-sungai-duren.jambiprov.go.id/jadwal-vaksinasi-desember-2026-lengkap"
NOTICE = f"Vaksinasi gratis di puskesmas hari ini. <b>Bawa KTP</b>. Jadwal: {LINK}"
NOTICE_EN = "Free vaccination at the puskesmas today. Bring your ID card."


@pytest.fixture
def village(tmp_path, monkeypatch):
    shift = tmp_path / "clock-shift"
    shift.write_text("0")
    # The gateway's and the portal's wall clocks read the shift (both inherit the variable).
    monkeypatch.setenv(TEST_CLOCK_SHIFT_ENV, str(shift))
    with simulated_village(
        tmp_path,
        "hsa",
        {"index.html": b"<!doctype html><title>Berita</title><h1>upstream ok</h1>"},
        {"operator": {"management_networks": ["192.168.88.0/24"]}},
    ) as v:
        v.clock_shift = shift
        yield v


def _field(ts: dt.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M")


def test_an_announcement_from_the_console_shows_on_the_splash_until_its_end(
    village, playwright, artifacts
):
    kiosk, villager = 0, 1
    village.add_operator("budi", "admin", ADMIN_PW)
    _operator_network(village, kiosk)
    laptop = launch(playwright, ("10.10.0.1",), executable=village.chromium_in(kiosk))
    handset = launch(
        playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(villager)
    )
    try:
        # The admin enters the notice: from a few minutes ago to half an hour from now, WIB.
        ctx = phone_context(laptop)
        page = ctx.new_page()
        page.goto(PORTAL + "/operator/")
        page.fill("#f-name", "budi")
        page.fill("#f-password", ADMIN_PW)
        page.click("form[action='/operator/login'] button")
        page.wait_for_url(re.compile(r"/operator/?$"))
        page.click("nav.menu >> text=Pengumuman")
        page.wait_for_url(re.compile(r"/operator/announcements$"))
        now = dt.datetime.now(WIB)
        page.fill("#f-text_id", NOTICE)
        page.fill("#f-text_en", NOTICE_EN)
        page.fill("#f-starts", _field(now - dt.timedelta(minutes=5)))
        page.fill("#f-ends", _field(now + dt.timedelta(minutes=30)))
        page.click("form[action='/operator/announcements'] button[type=submit]")
        page.wait_for_url(re.compile(r"/operator/announcements\?done=announcement"))
        row = page.locator("main .notices li")
        assert row.count() == 1 and "sedang tampil" in row.inner_text()
        assert "<b>Bawa KTP</b>" in row.inner_text()
        shot(page, artifacts, "0-console")
        ctx.close()

        # A villager's phone, captive: the splash shows it, as text, inside the screen.
        vctx = phone_context(handset)
        splash = vctx.new_page()
        splash.goto(f"http://{UPSTREAM_IP}/index.html")
        assert splash.url.startswith(PORTAL + "/?to=")  # through the real NAT redirect
        notice = splash.locator(".announcement")
        assert notice.count() == 1
        assert notice.inner_text() == NOTICE  # the markup shows as typed
        assert notice.locator("b").count() == 0
        assert page_width(handset, splash.url) <= 360
        box = notice.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 360
        shot(splash, artifacts, "1-splash-id")
        splash.goto(PORTAL + "/?lang=en")
        assert splash.locator(".announcement").inner_text() == NOTICE_EN
        shot(splash, artifacts, "2-splash-en")

        # Forty minutes later on the village's clock: past its end, gone.
        village.clock_shift.write_text(str(40 * 60))
        splash.goto(PORTAL + "/?lang=id")
        assert splash.locator("h1").count() == 1
        assert splash.locator(".announcement").count() == 0
        shot(splash, artifacts, "3-splash-after-the-end")
        vctx.close()
    finally:
        laptop.close()
        handset.close()
