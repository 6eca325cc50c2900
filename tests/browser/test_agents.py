"""Agents in Chromium at 360 px (issue #13.4), against the portal on loopback (the console's
management side; tests/browser/test_pages.py's fixture, no root).

``test_agent_journey_on_a_phone``: the admin, on a phone, gives a batch to Warung Bu Ina at
the agent's price and records her payment; Bu Ina logs in on her own phone, sees her stock
and not Toko Pak Ali's, sells one card with a tap and lands on its receipt, and an admin
page is a friendly 403 for her. Every page fits 360 px. Screenshots under artifacts/.
"""

from __future__ import annotations

import re

from hotspot import operators
from hotspot.audit import Actor
from hotspot.vouchers import agents
from hotspot.vouchers.batches import create_batch
from tests.browser.conftest import (
    console_login,
    launch,
    shot,
    watched_phone,
)
from tests.browser.test_pages import KEY, PORTAL_IP, portal  # noqa: F401 - the loopback portal

ADMIN_PW = "Sungai-Duren-77"
INA_PW = "warung-kopi-pagi-9"
ALI_PW = "toko-sembako-77"
CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{2,4}$")


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, page.url


def test_agent_journey_on_a_phone(playwright, portal, artifacts):
    root = Actor("cli:root", role="admin")
    operators.add(portal.db, "budi", "admin", ADMIN_PW, actor=root, full_name="Pak Budi")
    ina = operators.add(portal.db, "ina", "agen", INA_PW, actor=root, full_name="Warung Bu Ina")
    operators.add(portal.db, "ali", "agen", ALI_PW, actor=root, full_name="Toko Pak Ali")
    mine = create_batch(portal.db, KEY, "harian", 5, created_by="budi")
    theirs = create_batch(portal.db, KEY, "mingguan", 3, created_by="budi")
    agents.assign(portal.db, theirs.id, "ali", 20000, actor=root)

    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    try:
        # -- the admin gives the batch and records a payment ------------------------------
        ctx, page = watched_phone(browser, problems)
        console_login(page, portal.base, "budi", ADMIN_PW)
        page.click("nav.menu >> text=Agen")
        page.wait_for_url(re.compile(r"/operator/agents$"))
        page.select_option("#f-assign-agent", label="ina")
        page.select_option("#f-batch", value=str(mine.id))
        page.fill("#f-price", "4000")
        shot(page, artifacts, "agents-0-assign")
        page.click("#assign")
        page.wait_for_url(re.compile(r"/operator/agents\?done=agent-assigned"))
        assert "Kelompok sudah diberikan kepada agen." in page.inner_text("main")
        _fits(page)
        page.select_option("#f-settle-agent", value=str(ina["id"]))
        page.fill("#f-amount", "8.000")
        page.fill("#f-note", "setoran Senin")
        page.click("#settle")
        page.wait_for_url(re.compile(r"done=agent-paid"))
        ledger = page.inner_text("#agent-ledger")
        assert "Rp 8.000" in ledger
        assert "setoran Senin" in page.inner_text("#settlements")
        _fits(page)
        shot(page, artifacts, "agents-1-ledger")
        ctx.close()

        # -- the agent sells one card on her phone ---------------------------------------
        ctx, page = watched_phone(browser, problems, javascript=True)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        console_login(page, portal.base, "ina", INA_PW, lands=r"/operator/agent$")
        main = page.inner_text("main")
        assert "Stok saya" in main and f"kelompok #{mine.id}" in main
        assert f"kelompok #{theirs.id}" not in main  # Toko Pak Ali's stock is not hers
        assert page.inner_text("#my-stock") == "5"
        assert page.locator("nav.menu a").count() == 1  # My stock, nothing of the kasir's
        _fits(page)
        shot(page, artifacts, "agents-2-my-stock")
        page.click(f"#sell-next-{mine.id}")
        page.wait_for_url(re.compile(r"/operator/receipt/\d+\?print=1"))
        code = page.inner_text("#receipt-code").strip()
        assert CODE.match(code), code
        assert page.locator("#print-again").is_visible()
        _fits(page)
        shot(page, artifacts, "agents-3-receipt")
        page.goto(portal.base + "/operator/agent")
        assert page.inner_text("#my-stock") == "4" and page.inner_text("#my-sold") == "1"
        # she owed 4.000 for the card and paid 8.000 ahead
        assert page.inner_text("#my-owed") == "Rp -4.000"
        assert problems == []
        # an admin page is a friendly 403, in her language (a page without the console
        # watch: the browser logs the refusals, as it should)
        page.close()
        page = ctx.new_page()
        resp = page.goto(portal.base + "/operator/agents")
        assert resp.status == 403
        assert "Bukan untuk agen" in page.inner_text("main")
        resp = page.goto(portal.base + f"/operator/agent/batches/{theirs.id}/sheet")
        assert resp.status == 404
        ctx.close()
    finally:
        browser.close()
    assert problems == []
    row = next(r for r in agents.ledger(portal.db) if r["agent"] == "ina")
    assert (row["sold"], row["due"], row["paid"], row["owed"]) == (1, 4000, 8000, -4000)
