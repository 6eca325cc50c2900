"""The daily summary page (issue #13, item 7) in Chromium on a 360 px phone, against the
portal on loopback (tests/browser/test_pages.py's set-up with [summary] on, no root).

``test_admin_checks_the_daily_summary_on_a_phone``: the admin logs in, taps "Ringkasan
harian" in the menu and sees that it is on, the masked token, a summary Telegram refused with
its reason, one sent and today's message; nothing is wider than the screen. A kasir tapping
the same address gets the 403 page. Screenshots under artifacts/.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy.orm import Session

from hotspot import operators
from hotspot.audit import Actor
from tests.browser.conftest import (
    console_login,
    launch,
    phone_context,
    shot,
    watched_phone,
)
from tests.browser.test_pages import PORTAL_IP, loopback_portal
from tests.unit.portal.conftest import PACKAGES
from tests.unit.portal.operator.conftest import sent_and_refused_summaries
from tests.unit.sync.botapi import CHAT, TOKEN

ADMIN_PW = "Sungai-Duren-77"
KASIR_PW = "kios-pasar-2026"


@pytest.fixture
def portal(tmp_path):
    with loopback_portal(
        tmp_path,
        packages={k: PACKAGES[k] for k in ("harian", "mingguan")},
        summary={"enabled": True, "telegram_bot_token": TOKEN, "telegram_chat_id": CHAT},
    ) as served:
        _staff_and_summaries(served.db)
        yield served.base


def _staff_and_summaries(db) -> None:
    """An admin and a kasir; the summary of 28 November sent, that of the 29th refused by
    Telegram."""
    setup = Actor("cli:root", role="admin")
    operators.add(db, "budi", "admin", ADMIN_PW, actor=setup, full_name="Pak Budi")
    operators.add(db, "siti", "kasir", KASIR_PW, actor=setup, full_name="Bu Siti")
    with Session(db) as s, s.begin():
        s.add_all(sent_and_refused_summaries("Telegram answered 400: Bad Request: chat not found"))


def test_admin_checks_the_daily_summary_on_a_phone(playwright, portal, artifacts):
    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    try:
        ctx, page = watched_phone(browser, problems)
        console_login(page, portal, "budi", ADMIN_PW)
        page.click("nav.menu >> text=Ringkasan harian")
        page.wait_for_url(re.compile(r"/operator/summary$"))
        shot(page, artifacts, "summary-admin-360")
        main = page.inner_text("main")
        assert page.inner_text("#summary-state").strip() == "aktif"
        assert page.inner_text("#summary-token").strip() == "123456789:••••0123"
        assert TOKEN.split(":")[1] not in page.content()
        assert "Telegram menolak 1 ringkasan" in main
        assert "chat not found" in main and "terkirim" in main and "ditolak" in main
        assert page.inner_text("#summary-preview").startswith("Ringkasan WiFi Desa Sungai Duren")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        ctx.close()
        # a kasir on her phone: the page is not hers, and not in her menu
        ctx = phone_context(browser)
        page = ctx.new_page()
        console_login(page, portal, "siti", KASIR_PW)
        assert page.locator("nav.menu >> text=Ringkasan harian").count() == 0
        resp = page.goto(portal + "/operator/summary")
        assert resp.status == 403
        assert TOKEN.split(":")[1] not in page.content()
        shot(page, artifacts, "summary-kasir-403")
        ctx.close()
    finally:
        browser.close()
    assert problems == []
