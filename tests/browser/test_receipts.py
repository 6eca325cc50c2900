"""Receipts and the quick sale in Chromium (issue #13.3), against the portal on loopback
(the console's management side; tests/browser/test_pages.py's fixture, no root).

* ``test_quick_sale_on_a_phone``: the kasir logs in on a 360 px phone, taps a package on the
  home screen and lands on its receipt, which fits the screen.
* ``test_receipt_pdf_at_58_and_80_mm``: Chromium's PDF output of the receipt page at 58 mm
  and 80 mm paper: one page of the right width, and in print layout the code is there and no
  element is wider than the paper. Screenshots and PDFs under artifacts/.
"""

from __future__ import annotations

import re

import pytest

from hotspot import operators
from hotspot.audit import Actor
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.packages import all_packages
from tests.browser.conftest import (
    console_login,
    launch,
    phone_context,
    shot,
    watched_phone,
)
from tests.browser.test_pages import KEY, PORTAL_IP, portal  # noqa: F401 - the loopback portal

KASIR_PW = "kios-pasar-2026"
CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{2,4}$")
MM = 96 / 25.4  # CSS px per millimetre
PT = 72 / 25.4  # PDF points per millimetre


@pytest.fixture
def stocked(portal):
    setup = Actor("cli:root", role="admin")
    operators.add(portal.db, "siti", "kasir", KASIR_PW, actor=setup, full_name="Bu Siti")
    create_batch(portal.db, KEY, "harian", 5, created_by="budi")
    pid = next(p.id for p in all_packages(portal.db) if p.name == "harian")
    return portal, pid


def _sell(page, base: str, pid: int) -> str:
    """The two taps: the package on the home screen (and the print dialog's button, which
    headless Chromium does not show). Returns the receipt's code."""
    page.goto(base + "/operator/")
    page.click(f"#quick-{pid}")
    page.wait_for_url(re.compile(r"/operator/receipt/\d+"))
    code = page.inner_text("#receipt-code").strip()
    assert CODE.match(code), code
    return code


def test_quick_sale_on_a_phone(playwright, stocked, artifacts):
    portal, pid = stocked
    browser = launch(playwright, (PORTAL_IP,))
    problems: list[str] = []
    try:
        ctx, page = watched_phone(browser, problems, javascript=True)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        console_login(page, portal.base, "siti", KASIR_PW)
        shot(page, artifacts, "0-home")
        assert "Jual cepat" in page.inner_text("main")
        code = _sell(page, portal.base, pid)
        assert "print=1" in page.url
        assert page.locator("#print-again").is_visible()
        assert page.inner_text("#print-again") == "Cetak lagi"
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        shot(page, artifacts, "1-receipt")
        # back home: one fewer in stock, and the next tap sells another card
        code2 = _sell(page, portal.base, pid)
        assert code2 != code
        ctx.close()
    finally:
        browser.close()
    assert problems == []


@pytest.mark.parametrize("width", [58, 80])
def test_receipt_pdf_at_58_and_80_mm(playwright, stocked, artifacts, width):
    portal, pid = stocked
    browser = launch(playwright, (PORTAL_IP,))
    try:
        ctx = phone_context(browser, javascript=True)
        page = ctx.new_page()
        console_login(page, portal.base, "siti", KASIR_PW)
        code = _sell(page, portal.base, pid)
        page.goto(page.url.split("?")[0] + f"?w={width}")
        page.emulate_media(media="print")
        paper = width * MM
        layout = page.evaluate(
            """() => {
                const r = document.getElementById('receipt').getBoundingClientRect();
                let widest = 0;
                for (const el of document.querySelectorAll('#receipt *')) {
                    const b = el.getBoundingClientRect();
                    widest = Math.max(widest, b.right - r.left);
                }
                const hidden = [...document.querySelectorAll('.noprint, nav, header.top')]
                    .every(el => getComputedStyle(el).display === 'none');
                return {width: r.width, widest, hidden,
                        text: document.getElementById('receipt').innerText};
            }"""
        )
        assert layout["hidden"]
        assert code in layout["text"]
        assert layout["width"] <= paper + 1, layout
        assert layout["widest"] <= paper + 1, layout
        shot(page, artifacts, f"receipt-{width}mm-print")
        pdf = page.pdf(
            width=f"{width}mm",
            height="250mm",
            margin={"top": "0", "right": "0", "bottom": "0", "left": "0"},
            print_background=False,
        )
        (artifacts / f"receipt-{width}mm.pdf").write_bytes(pdf)
        pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
        assert len(pages) == 1
        box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
        assert box is not None
        assert abs(float(box.group(1)) - width * PT) < 1.5, box.group(0)
        ctx.close()
    finally:
        browser.close()
