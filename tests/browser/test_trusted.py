"""Trusted devices in Chromium (issue #13 item 5), against the portal on loopback with the real
session engine on a fake data path (tests/browser/test_pages.py's fixture, no root).

* ``test_admin_trusts_and_removes_a_device_on_a_phone``: the admin logs in on a 360 px phone
  (JavaScript off, Bahasa Indonesia), opens *Perangkat tepercaya* from the menu, types a bad
  address first (a friendly message, the name kept), then adds the puskesmas PC (not on the
  LAN: *offline*) and the balai desa CCTV (on the LAN: let out at once, *online di …*) at
  *tanpa batas*, sees both listed, and removes them; every page fits the screen and the
  gateway's list follows each tap.
* ``test_kasir_gets_the_friendly_403``: a kasir has no menu item; opening the page gives the
  "Khusus admin" page (no form, fits the screen), and a hostile kasir who posts the add form
  with a valid CSRF token of his own session is refused the same way and changes nothing.

Screenshots under artifacts/<test name>/.
"""

from __future__ import annotations

import re

import pytest

from hotspot import operators
from hotspot.audit import Actor
from tests.browser.conftest import (
    console_login,
    launch,
    page_width,
    phone_context,
    shot,
    watched_phone,
)
from tests.browser.test_pages import PORTAL_IP, portal  # noqa: F401 - the loopback portal

ADMIN_PW = "Sungai-Duren-77"
KASIR_PW = "kios-pasar-2026"
PC_MAC = "3c:5a:b4:12:34:56"  # the puskesmas PC, switched off
CCTV_IP, CCTV_MAC = "127.0.0.9", "02:00:00:00:00:09"  # on the LAN now


@pytest.fixture
def staffed(portal):
    setup = Actor("cli:root", role="admin")
    operators.add(portal.db, "budi", "admin", ADMIN_PW, actor=setup, full_name="Pak Budi")
    operators.add(portal.db, "siti", "kasir", KASIR_PW, actor=setup, full_name="Bu Siti")
    portal.datapath.neighbours[CCTV_IP] = CCTV_MAC
    return portal


def _fits(browser, page) -> None:
    assert page_width(browser, page.url, page.context.cookies()) <= 360, page.url


def _trusted(portal) -> dict[str, dict]:
    return {row["mac"]: row for row in portal.gw.call("trusted")}


def _add(page, label: str, mac: str) -> None:
    page.fill("#f-label", label)
    page.fill("#f-mac", mac)
    page.select_option("#f-tier", "unlimited")
    page.click("form[action='/operator/trusted'] button[type=submit]")


def _row(page, label: str):
    return page.locator("main table tbody tr", has_text=label)


def test_admin_trusts_and_removes_a_device_on_a_phone(playwright, staffed, artifacts):
    portal = staffed
    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    try:
        ctx, page = watched_phone(browser, problems)
        console_login(page, portal.base, "budi", ADMIN_PW)
        page.click("nav.menu >> text=Perangkat tepercaya")
        page.wait_for_url(re.compile(r"/operator/trusted$"))
        assert page.inner_text("h1") == "Perangkat tepercaya"
        assert "Belum ada perangkat tepercaya." in page.inner_text("main")
        assert page.inner_text("label[for=f-mac]") == "Kode unik perangkat (alamat MAC)"
        _fits(browser, page)
        shot(page, artifacts, "0-empty")

        # A mistyped address: said plainly, what was typed is kept, nothing is trusted.
        _add(page, "PC puskesmas", "3c:5a:b4:12:34")
        assert page.locator("#mac-err").is_visible()
        assert "Bukan kode unik perangkat (alamat MAC)" in page.inner_text("#mac-err")
        assert page.input_value("#f-label") == "PC puskesmas"
        assert _trusted(portal) == {}
        _fits(browser, page)
        shot(page, artifacts, "1-bad-address")

        # The puskesmas PC, switched off: listed, offline.
        _add(page, "PC puskesmas", PC_MAC.upper().replace(":", "-"))
        page.wait_for_url(re.compile(r"/operator/trusted\?done=trusted"))
        assert "langsung online tanpa portal" in page.inner_text("main .done")
        row = _row(page, "PC puskesmas")
        assert PC_MAC in row.inner_text() and "tanpa batas" in row.inner_text()
        assert "offline" in row.inner_text()
        assert _trusted(portal)[PC_MAC]["tier"] == "unlimited"
        assert _trusted(portal)[PC_MAC]["created_by"] == "budi"

        # The balai desa CCTV, on the LAN: let out at once.
        _add(page, "CCTV balai desa", CCTV_MAC)
        page.wait_for_url(re.compile(r"/operator/trusted\?done=trusted"))
        assert f"online di {CCTV_IP}" in _row(page, "CCTV balai desa").inner_text()
        assert portal.gw.call("client", ip=CCTV_IP)["session"]["source"] == "trusted"
        assert page.locator("main table tbody tr").count() == 2
        _fits(browser, page)
        shot(page, artifacts, "2-two-devices")

        # Removed: the CCTV sees the portal again; the list follows.
        _row(page, "CCTV balai desa").locator("button", has_text="Hapus").click()
        page.wait_for_url(re.compile(r"/operator/trusted\?done=untrusted"))
        assert "melihat portal lagi" in page.inner_text("main .done")
        assert _row(page, "CCTV balai desa").count() == 0
        assert portal.gw.call("client", ip=CCTV_IP)["session"] is None
        _row(page, "PC puskesmas").locator("button", has_text="Hapus").click()
        page.wait_for_url(re.compile(r"/operator/trusted\?done=untrusted"))
        assert "Belum ada perangkat tepercaya." in page.inner_text("main")
        assert _trusted(portal) == {}
        _fits(browser, page)
        shot(page, artifacts, "3-removed")
        ctx.close()
    finally:
        browser.close()
    assert problems == []


def test_kasir_gets_the_friendly_403(playwright, staffed, artifacts):
    portal = staffed
    browser = launch(playwright, (PORTAL_IP,))
    try:
        ctx = phone_context(browser)
        page = ctx.new_page()
        console_login(page, portal.base, "siti", KASIR_PW)
        assert page.locator("nav.menu >> text=Perangkat tepercaya").count() == 0
        resp = page.goto(portal.base + "/operator/trusted")
        assert resp is not None and resp.status == 403
        assert page.inner_text("h1") == "Khusus admin"
        assert "Halaman ini untuk admin BUMDes" in page.inner_text("main")
        assert page.locator("#f-mac").count() == 0
        _fits(browser, page)
        shot(page, artifacts, "0-kasir-403")

        # A kasir who knows the form posts it with his own session's valid CSRF token.
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        resp = ctx.request.post(
            portal.base + "/operator/trusted",
            form={"csrf_token": token, "label": "HP saya", "mac": PC_MAC, "tier": "unlimited"},
            headers={"Origin": portal.base, "Referer": portal.base + "/operator/trusted"},
            max_redirects=0,
        )
        assert resp.status == 403, resp.status
        assert "Khusus admin" in resp.text()
        assert portal.gw.call("trusted") == []
        ctx.close()
    finally:
        browser.close()
