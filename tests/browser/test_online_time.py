"""Online-time packages (issue #13, item 1) in Chromium at 360 px, against the portal on
loopback (tests/browser/test_pages.py's fixture, no root):

* the admin, on a phone, makes a package "1 Jam Online" (60 minutes online, valid 7 days) in
  the console's package form and a batch of it;
* a villager types its code on the splash and sees, on the status page, the online time
  left, the data left and the validity end in WIB — not "Asia/Jakarta".

Screenshots under artifacts/.
"""

from __future__ import annotations

import re

from hotspot import operators
from hotspot.audit import Actor
from hotspot.vouchers.packages import all_packages
from tests.browser.conftest import (
    console_login,
    launch,
    page_width,
    shot,
    watched_phone,
)
from tests.browser.test_pages import PORTAL_IP, portal  # noqa: F401 - the loopback portal

ADMIN_PW = "Sungai-Duren-77"
CODE = re.compile(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{2,4}")


def test_admin_sells_online_time_and_the_villager_sees_it_in_wib(playwright, portal, artifacts):
    operators.add(portal.db, "budi", "admin", ADMIN_PW, actor=Actor("cli:root", role="admin"))
    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    try:
        # -- the admin, in the console on a phone ----------------------------------------
        ctx, page = watched_phone(browser, problems)
        console_login(page, portal.base, "budi", ADMIN_PW)
        page.goto(portal.base + "/operator/packages/new")
        page.fill("#f-name", "sejam")
        page.fill("#f-title", "1 Jam Online")
        page.fill("#f-price", "2000")
        page.click("#f-kind-online")
        page.fill("#f-online_minutes", "60")
        page.fill("#f-valid_days", "7")
        page.fill("#f-data_mb", "500")
        form_url = portal.base + "/operator/packages/new"
        assert page_width(browser, form_url, ctx.cookies()) <= 360
        shot(page, artifacts, "0-package-form")
        page.click("form[action='/operator/packages/new'] button[type=submit]")
        page.wait_for_url(re.compile(r"/operator/packages"))
        row = page.locator("tr", has_text="1 Jam Online").inner_text()
        assert "1 jam online, berlaku 7 hari" in row, row
        shot(page, artifacts, "1-packages")
        pkg = next(p for p in all_packages(portal.db) if p.name == "sejam")
        assert (pkg.online_minutes, pkg.valid_days) == (60, 7)

        page.goto(portal.base + "/operator/batches")
        page.select_option("#f-package", str(pkg.id))
        page.fill("#f-count", "1")
        page.click("form[action='/operator/batches'] button[type=submit]")
        page.wait_for_url(re.compile(r"/operator/batches/\d+"))
        assert "1 jam online, berlaku 7 hari" in page.inner_text("main")  # the batch's terms
        page.goto(page.url.split("?")[0] + "/sheet")
        code = CODE.search(page.locator(".vcode").first.inner_text())
        assert code, page.url
        ctx.close()

        # -- the villager, on the splash -------------------------------------------------
        ctx, page = watched_phone(browser, problems)
        page.goto(portal.base + "/")
        assert "1 jam online, berlaku 7 hari" in page.inner_text("main")  # the price list
        page.fill("#code", code.group(0).lower().replace("-", " "))
        page.click("#voucher button")
        page.wait_for_url(re.compile(r"/ok"))
        assert "waktu online" in page.inner_text("main")
        page.goto(portal.base + "/")
        main = page.inner_text("main")
        assert "Sisa waktu online" in main and "1 jam" in page.inner_text("#online-left")
        assert "Sisa kuota" in main and "500 MB" in main
        valid = page.inner_text("#valid-until")
        assert re.fullmatch(r"\d{1,2} \w{3} \d{4} \d{2}\.\d{2} WIB", valid), valid
        assert "Asia/Jakarta" not in page.content()
        assert page_width(browser, portal.base + "/") <= 360
        shot(page, artifacts, "2-status")
        ctx.close()
    finally:
        browser.close()
    assert problems == []
