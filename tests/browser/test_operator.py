"""The operator console in Chromium.

* ``test_console_pages_on_a_phone`` (no root): every console page at 360 px with JavaScript
  off, in Bahasa Indonesia and English, against the portal on loopback (tests/browser/
  test_pages.py's fixture); the printed A4 sheet; nothing wider than the screen, no CSP
  complaint. Screenshots under artifacts/test_console_pages_on_a_phone/.
* ``test_kiosk_day`` (root): the real gateway and portal in a simulated village (network
  namespaces). The kiosk's laptop is one LAN client that reaches the console through the
  operator network (a veth to the gateway in 192.168.88.0/24: the console is not served over
  plain HTTP on the open LAN, #10.12), a villager's phone another, each with
  Chromium running inside its own namespace. The admin (made with ``hotspot operators add``)
  makes a package, a batch and a kasir account and prints the sheet; the kasir marks a card
  sold; the villager redeems it through the captive portal and reaches the internet; the
  kasir sees the session live and disconnects it; the phone is captive again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from hotspot import operators
from hotspot.audit import Actor
from tests.browser.conftest import (
    VILLAGE_TOOLS,
    launch,
    page_width,
    phone_context,
    shot,
    watch_static,
)
from tests.browser.test_e2e import village  # noqa: F401 - the simulated village (root)
from tests.browser.test_pages import PORTAL_IP, portal  # noqa: F401 - the loopback portal

ADMIN_PW = "Sungai-Duren-77"
KASIR_PW = "kios-pasar-2026"


def _watch(page, problems: list[str]) -> None:
    # (A page answered 4xx on purpose — a form with a bad field — logs "Failed to load
    # resource" too: that is the test's doing, not the page's.)
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") and "status of 4" not in m.text
            else None
        ),
    )
    watch_static(page, problems)


def _login(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/operator/")
    assert "/operator/login" in page.url
    page.fill("#f-name", name)
    page.fill("#f-password", password)
    page.click("form[action='/operator/login'] button")
    assert page.url.rstrip("/").endswith("/operator"), page.url


def test_console_pages_on_a_phone(playwright, portal, artifacts):
    from hotspot.vouchers.batches import create_batch

    db = portal.db
    setup = Actor("cli:root", role="admin")
    operators.add(db, "budi", "admin", ADMIN_PW, actor=setup, full_name="Pak Budi")
    create_batch(db, b"v" * 32, "harian", 30, created_by="budi")
    portal.gw.call("authorize", ip="127.0.0.1", tier="free", source="free")
    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    pages = [
        ("overview", "/operator/"),
        ("sell", "/operator/sell"),
        ("vouchers", "/operator/batches"),
        ("batch", "/operator/batches/1"),
        ("online", "/operator/sessions"),
        ("sales", "/operator/sales?view=days"),
        ("cash", "/operator/sales?view=cash"),
        ("packages", "/operator/packages"),
        ("package-new", "/operator/packages/new"),
        ("accounts", "/operator/operators"),
        ("agents", "/operator/agents"),
        ("audit", "/operator/audit"),
    ]
    try:
        for lang in ("id", "en"):
            ctx = phone_context(browser, lang="id-ID" if lang == "id" else "en-US")
            page = ctx.new_page()
            _watch(page, problems)
            page.goto(portal.base + "/operator/login")
            shot(page, artifacts, f"{lang}-0-login")
            _login(page, portal.base, "budi", ADMIN_PW)
            assert page.locator("html").get_attribute("lang") == lang
            cookies = ctx.cookies()
            for i, (name, path) in enumerate(pages, start=1):
                page.goto(portal.base + path)
                assert page.locator("h1").count() == 1, path
                shot(page, artifacts, f"{lang}-{i}-{name}")
                if lang == "id":
                    assert page_width(browser, portal.base + path, cookies) <= 360, path
            # bad input, said plainly, nothing lost
            page.goto(portal.base + "/operator/packages/new")
            page.fill("#f-name", "malam")
            page.fill("#f-title", "Paket Malam")
            page.fill("#f-price", "-3000")
            page.fill("#f-duration", "12")
            page.click("main form button[type=submit]")
            assert page.locator("#price-err").is_visible()
            assert page.input_value("#f-title") == "Paket Malam"
            shot(page, artifacts, f"{lang}-12-package-bad-price")
            page.goto(portal.base + "/operator/batches")
            page.fill("#f-count", "5000")
            page.click("form[action='/operator/batches'] button")
            assert page.locator("#count-err").is_visible()
            assert "1000" in page.inner_text("#count-err")
            shot(page, artifacts, f"{lang}-13-batch-too-many")
            ctx.close()
        # the sheet as printed: A4 at 96 dpi is 794 px wide
        ctx = browser.new_context(
            viewport={"width": 794, "height": 1123}, locale="id-ID", java_script_enabled=False
        )
        page = ctx.new_page()
        _login(page, portal.base, "budi", ADMIN_PW)
        page.goto(portal.base + "/operator/batches/1/sheet")
        assert page.locator(".vcard").count() == 30
        page.emulate_media(media="print")
        shot(page, artifacts, "sheet-print-a4")
        page.pdf(path=str(artifacts / "sheet.pdf"), format="A4", print_background=False)
        page.emulate_media(media="screen")
        ctx.close()
    finally:
        browser.close()
    assert problems == []


# -- the kiosk's day, in a simulated village (root) -------------------------------------------

MGMT_GW, MGMT_KIOSK = "192.168.88.1", "192.168.88.10"


def _operator_network(village, phone: int) -> None:
    """The kiosk joins the operator network: a veth from its namespace to the gateway's, and
    the portal's address routed over it (the LAN leg stays for everything else)."""
    from testsupport.testbed import veth

    ns, gw = village.bed.phones[phone].ns, village.bed.gw
    veth("opm0", gw, "opm1", ns)
    village.bed.ip_batch(gw, "link set opm0 up", f"addr add {MGMT_GW}/24 dev opm0")
    village.bed.ip_batch(
        ns,
        "link set opm1 up",
        f"addr add {MGMT_KIOSK}/24 dev opm1",
        f"route add 10.10.0.1/32 via {MGMT_GW} src {MGMT_KIOSK}",
    )


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables")
@pytest.mark.skipif(
    any(shutil.which(t) is None for t in VILLAGE_TOOLS), reason=f"needs {', '.join(VILLAGE_TOOLS)}"
)
def test_kiosk_day(village, playwright, artifacts):
    from testsupport.testbed import UPSTREAM_IP

    base = "http://10.10.0.1:8080"
    kiosk, villager = 0, 1
    phone = village.bed.phones[villager]
    # The first admin is made on the gateway's terminal (password on stdin).
    village.add_operator("budi", "admin", ADMIN_PW)
    laptop = launch(playwright, ("10.10.0.1",), executable=village.chromium_in(kiosk))
    handset = launch(
        playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(villager)
    )
    problems: list[str] = []
    try:
        # A villager's phone on the open WiFi, at 360 px: over plain HTTP the console is only
        # a page saying where to open it (#10.12), no login form.
        vctx = phone_context(handset)
        open_lan = vctx.new_page()
        resp = open_lan.goto(base + "/operator/")
        assert resp is not None and resp.status == 403
        assert "Buka konsol di jaringan operator" in open_lan.inner_text("main")
        assert open_lan.locator("#f-password").count() == 0
        assert open_lan.evaluate("document.documentElement.scrollWidth") <= 360
        shot(open_lan, artifacts, "0-open-lan-console")
        vctx.close()

        # The kiosk's laptop on the operator network: the console works.
        _operator_network(village, kiosk)
        ctx = laptop.new_context(
            viewport={"width": 1024, "height": 768}, locale="id-ID", java_script_enabled=False
        )
        page = ctx.new_page()
        _watch(page, problems)
        _login(page, base, "budi", ADMIN_PW)
        shot(page, artifacts, "1-admin-overview")

        # A package made in the console...
        page.goto(base + "/operator/packages/new")
        page.fill("#f-name", "sore")
        page.fill("#f-title", "Paket Sore")
        page.fill("#f-price", "3000")
        page.fill("#f-duration", "3")
        page.fill("#f-data_mb", "500")
        page.click("main form button[type=submit]")
        assert "/operator/packages" in page.url and "Paket disimpan." in page.inner_text("main")
        shot(page, artifacts, "2-packages")

        # ...a batch of it, and its sheet.
        page.goto(base + "/operator/batches")
        page.select_option("#f-package", label="Paket Sore · Rp 3.000")
        page.fill("#f-count", "6")
        page.click("form[action='/operator/batches'] button")
        assert re.search(r"/operator/batches/\d+", page.url)
        shot(page, artifacts, "3-batch")
        page.click("#print")
        codes = [c.strip() for c in page.locator(".vcode").all_inner_texts()]
        assert len(codes) == 6 and all(
            re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{2}", c) for c in codes
        )
        assert page.locator(".vcard svg.qr").count() == 6
        page.emulate_media(media="print")
        sheet = shot(page, artifacts, "4-sheet-print")
        page.emulate_media(media="screen")
        if shutil.which("zbarimg"):  # the QR codes, as a phone's camera would read them
            read = subprocess.run(
                ["zbarimg", "-q", "--raw", str(sheet)], capture_output=True, text=True, timeout=60
            ).stdout.split()
            assert sorted(read) == sorted(f"{base}/?code={c}" for c in codes)

        # The kasir's account.
        page.goto(base + "/operator/operators")
        page.fill("#f-name", "siti")
        page.fill("#f-full_name", "Bu Siti")
        page.fill("#f-password", KASIR_PW)
        page.fill("#f-password2", KASIR_PW)
        page.click("form[action='/operator/operators'] button")
        assert "Akun disimpan." in page.inner_text("main")
        page.click("form[action='/operator/logout'] button")
        ctx.close()

        # The kasir sells the first card.
        ctx = laptop.new_context(
            viewport={"width": 1024, "height": 768}, locale="id-ID", java_script_enabled=False
        )
        page = ctx.new_page()
        _watch(page, problems)
        _login(page, base, "siti", KASIR_PW)
        page.goto(base + "/operator/packages")
        assert "Khusus admin" in page.inner_text("h1")  # a kasir on an admin page: 403
        shot(page, artifacts, "5-kasir-403")
        page.goto(base + "/operator/sell")
        page.fill("#f-code", codes[0].lower().replace("-", " "))
        page.click("form[action='/operator/sell'] button")
        assert "Terjual: Paket Sore, Rp 3.000" in page.inner_text("main")
        shot(page, artifacts, "6-kasir-sold")

        # The villager redeems it through the captive portal and reaches the internet.
        vctx = phone_context(handset)
        vpage = vctx.new_page()
        vpage.goto(f"http://{UPSTREAM_IP}/index.html")
        assert vpage.url.startswith(base + "/?to=")
        vpage.fill("#code", codes[0])
        vpage.click("#voucher button")
        assert vpage.url.startswith(base + "/ok")
        vpage.click("#continue")
        vpage.wait_for_url(f"http://{UPSTREAM_IP}/index.html")
        assert vpage.inner_text("h1") == "upstream ok"
        shot(vpage, artifacts, "7-villager-online")

        # The session shows up live in the console...
        page.goto(base + "/operator/sessions")
        card = page.locator(f"#s-{phone.mac.replace(':', '')}")
        assert card.count() == 1
        assert "Paket Sore" in card.inner_text() or "sore" in card.inner_text()
        assert phone.ip in card.inner_text()
        time.sleep(2.5)  # a second look shows the speed
        page.reload()
        shot(page, artifacts, "8-kasir-sessions")

        # ...and the kasir disconnects it.
        card = page.locator(f"#s-{phone.mac.replace(':', '')}")
        card.locator("button.kick").click()
        assert "Perangkat diputus." in page.inner_text("main")
        assert page.locator(f"#s-{phone.mac.replace(':', '')}").count() == 0
        shot(page, artifacts, "9-kasir-kicked")
        assert village.call("client", ip=phone.ip)["session"] is None
        assert village.curl(villager, f"http://{UPSTREAM_IP}/index.html").startswith("302 ")
        vpage.goto(f"http://{UPSTREAM_IP}/index.html")
        assert vpage.url.startswith(base + "/")  # captive again (the voucher still runs)
        shot(vpage, artifacts, "10-villager-captive-again")

        # The ledger has the sale, the audit log every step.
        ctx.close()
        ctx = laptop.new_context(
            viewport={"width": 1024, "height": 768}, locale="id-ID", java_script_enabled=False
        )
        page = ctx.new_page()
        _login(page, base, "budi", ADMIN_PW)
        page.goto(base + "/operator/sales")
        assert "Rp 3.000" in page.inner_text("#total")
        shot(page, artifacts, "11-admin-sales")
        page.goto(base + "/operator/audit")
        log = page.inner_text("main")
        for action in (
            "package.create",
            "batch.create",
            "batch.print",
            "voucher.sell",
            "session.kick",
            "operator.create",
        ):
            assert action in log
        shot(page, artifacts, "12-admin-audit")
        ctx.close()
    finally:
        laptop.close()
        handset.close()
    assert problems == []
