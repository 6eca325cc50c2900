"""Speed schedules (issue #13, item 6) in Chromium at 360 px.

* ``test_status_page_shows_the_boost`` (root, a simulated village): the free tier has a
  boost window that is on now; a villager taps "Terima & Sambungkan", opens the status page
  and reads the boosted speed and until when it lasts, in Indonesian and (after tapping
  "English") in English; the gateway's HTB classes are at the window's rates.
* ``test_console_shows_the_schedule`` (the loopback portal of test_pages.py, no root): the
  kasir logs in on a phone, taps *Online sekarang* and sees the session's speed in force
  and the tiers' schedules, the window that is on marked; nothing is wider than the screen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo

import pytest

from hotspot import config as config_mod
from hotspot import operators
from hotspot.audit import Actor
from tests.browser.conftest import (
    PORTAL,
    console_login,
    launch,
    phone_context,
    shot,
    simulated_village,
    village_marks,
)
from tests.browser.test_pages import PORTAL_IP, portal  # noqa: F401 - the loopback portal
from tests.netns.helpers import client_minor, tc_classes
from testsupport.testbed import UPSTREAM_IP

TZ = zoneinfo.ZoneInfo("Asia/Jakarta")
KASIR_PW = "kios-pasar-2026"


@pytest.fixture
def window():
    """A boost of the free tier from a minute ago to half an hour from now (WIB)."""
    now = dt.datetime.now(TZ).replace(second=0, microsecond=0)
    start, end = now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=30)
    return end, {"from": f"{start:%H:%M}", "to": f"{end:%H:%M}", "down_kbps": 4096, "up_kbps": 2048}


@pytest.fixture
def village(tmp_path, window):
    with simulated_village(
        tmp_path,
        "hss",
        {"index.html": b"<!doctype html><title>Berita</title><h1>upstream ok</h1>"},
        {
            "village": {"timezone": "Asia/Jakarta"},
            "tiers": {"free": {"schedule": [window[1]]}},
        },
    ) as v:
        yield v


def _in_the_village(test):
    """The marks of a test in the simulated village (root, its tools), for one test only."""
    for mark in village_marks():
        test = mark(test)
    return test


@_in_the_village
def test_status_page_shows_the_boost(village, window, playwright, artifacts):
    end, _ = window
    phone = village.bed.phones[0]
    browser = launch(playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(0))
    try:
        page = phone_context(browser).new_page()
        page.goto(f"http://{UPSTREAM_IP}/index.html")
        assert page.url.startswith(PORTAL + "/?to=")
        page.click("form[action='/accept'] button")
        assert page.url.startswith(PORTAL + "/ok")
        page.goto(PORTAL + "/")
        speed = page.inner_text(".status div:has(dt:text('Kecepatan')) dd")
        assert "4 Mbps unduh, 2 Mbps unggah" in speed, speed
        note = page.inner_text(".speed-window")
        assert note.startswith("Kecepatan bonus sampai ") and "WIB" in note, note
        assert f"{end:%H.%M} WIB" in note, note
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        shot(page, artifacts, "id-status-boost")
        page.click("text=English")
        note = page.inner_text(".speed-window")
        assert re.match(rf"Boosted speed until {end:%H:%M} WIB", note), note
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        shot(page, artifacts, "en-status-boost")
    finally:
        browser.close()
    # The kernel agrees: the phone's classes run at the window's rates.
    minor = client_minor(phone.ip)
    assert tc_classes(village.bed, "br-lan")[minor].ceil_bps == 4096 * 1000
    assert tc_classes(village.bed, "eth0")[minor].ceil_bps == 2048 * 1000


def test_console_shows_the_schedule(playwright, portal, window, artifacts):
    night = {**window[1], "down_kbps": 8000, "up_kbps": 3000}  # above premium's 5 Mbps
    cfg = portal.engine.config
    premium = cfg.tiers["premium"]
    # The loopback portal's configuration with a schedule for premium (both the engine and
    # the portal read this one object).
    windows = config_mod.load(overrides={"tiers": {"premium": {"schedule": [night]}}})
    cfg.tiers["premium"] = dataclasses.replace(premium, schedule=windows.tiers["premium"].schedule)
    portal.gw.call("authorize", ip="127.0.0.1", mac="02:00:00:00:00:01", tier="premium")
    operators.add(
        portal.db,
        "siti",
        "kasir",
        KASIR_PW,
        actor=Actor("cli:root", role="admin"),
        full_name="Bu Siti",
    )
    browser = launch(playwright, (PORTAL_IP,))
    try:
        page = phone_context(browser).new_page()
        console_login(page, portal.base, "siti", KASIR_PW)
        page.click("text=Online sekarang")
        page.wait_for_url(re.compile(r"/operator/sessions$"))
        limit = page.inner_text(".session dd .hint")
        assert "batas 8 Mbps · Kecepatan bonus sampai" in limit, limit
        card = page.inner_text("#speed-schedules")
        assert "Jadwal kecepatan" in card and "(sekarang)" in card, card
        assert f"{night['from'].replace(':', '.')}–{night['to'].replace(':', '.')} WIB" in card
        assert "jam lainnya" in card
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        shot(page, artifacts, "id-console-schedules")
    finally:
        browser.close()
