"""Speed schedules (issue #13, item 6) in Chromium, in a simulated village (root): the free
tier has a boost window that is on now; a villager on a 360 px phone taps "Terima &
Sambungkan", opens the status page and reads the boosted speed and until when it lasts, in
Indonesian and (after tapping "English") in English; the gateway's HTB class is at the
window's rate."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest

from tests.browser.conftest import (
    PORTAL,
    launch,
    phone_context,
    shot,
    simulated_village,
    village_marks,
)
from tests.netns.helpers import client_minor, tc_classes
from testsupport.testbed import UPSTREAM_IP

pytestmark = village_marks()
TZ = zoneinfo.ZoneInfo("Asia/Jakarta")


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
