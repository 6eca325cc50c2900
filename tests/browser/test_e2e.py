"""End to end, in a simulated village (network namespaces, root only): headless Chromium runs
*inside a phone's namespace*, asks for a page on the upstream "internet", is sent to the
portal by the real gateway's NAT redirect, accepts the terms (or enters a voucher) and then
loads the upstream page for real.

    hsp-c1, hsp-c2 (phones) ── br-lan ── hsp-gw: `hotspot gateway run` + `hotspot portal run`
                                                   └── hsp-up: 198.51.100.10 (http.server)

The namespace prefix ``hsp`` is this module's own, so it never touches another test's
village. Chromium is started through a wrapper (``ip netns exec hsp-cN chromium "$@"``):
Playwright drives it over a pipe, which crosses namespaces.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import (
    PORTAL,
    launch,
    phone_context,
    shot,
    simulated_village,
    village_marks,
)
from tests.unit.portal.conftest import PACKAGES
from testsupport.testbed import UPSTREAM_IP

pytestmark = village_marks()


@pytest.fixture
def village(tmp_path):
    with simulated_village(
        tmp_path,
        "hsp",
        {"index.html": b"<!doctype html><title>Berita</title><h1>upstream ok</h1>"},
        {
            "portal": {"contact": "Kios BUMDes, Pak Budi — WA 0812-7400-1234"},
            # The kiosk's operator network (tests/browser/test_operator.py, #10.12).
            "operator": {"management_networks": ["192.168.88.0/24"]},
            "packages": {"harian": PACKAGES["harian"]},  # 1000 MB, checked below
        },
    ) as v:
        yield v


def test_accept_the_terms_then_the_internet(village, playwright, artifacts):
    phone = village.bed.phones[0]
    assert village.curl(0, f"http://{UPSTREAM_IP}/index.html").startswith(f"302 {PORTAL}/?to=")
    assert village.curl(0, f"http://{UPSTREAM_IP}/generate_204").startswith("302 ")
    browser = launch(playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(0))
    try:
        page = phone_context(browser).new_page()
        page.goto(f"http://{UPSTREAM_IP}/index.html")
        assert page.url.startswith(PORTAL + "/?to=")  # through the real NAT redirect
        assert page.inner_text("form[action='/accept'] button") == "Terima & Sambungkan"
        shot(page, artifacts, "id-1-splash")
        page.click("text=English")
        assert page.locator("html").get_attribute("lang") == "en"
        shot(page, artifacts, "en-1-splash")
        page.click("text=Bahasa Indonesia")

        page.click("form[action='/accept'] button")
        assert page.url.startswith(PORTAL + "/ok")
        assert page.inner_text("h1") == "Anda sudah tersambung"
        shot(page, artifacts, "id-2-success")
        session = village.call("client", ip=phone.ip)["session"]
        assert session["mac"] == phone.mac and session["tier"] == "free"

        page.click("#continue")
        page.wait_for_url(f"http://{UPSTREAM_IP}/index.html")
        assert page.inner_text("h1") == "upstream ok"  # the real upstream host, for real
        shot(page, artifacts, "id-3-upstream")

        page.goto(PORTAL + "/")
        assert page.inner_text("form[action='/logout'] button") == "Putuskan"
        shot(page, artifacts, "id-4-status")
        page.goto(PORTAL + "/?lang=en")
        shot(page, artifacts, "en-4-status")
    finally:
        browser.close()
    # After login the probes reach the real internet (here: the upstream's 404), and the
    # RFC 8908 API tells the phone it is out.
    assert village.curl(0, f"http://{UPSTREAM_IP}/generate_204").startswith("404")
    api = village.bed.run(phone.ns, "curl", "-s", "-m", "5", f"{PORTAL}/api/captive").stdout
    assert '"captive":false' in api
    # Putuskan: walled again.
    village.call("deauthorize", ip=phone.ip, reason="logout")
    assert village.curl(0, f"http://{UPSTREAM_IP}/index.html").startswith("302")


def test_voucher_then_the_internet(village, playwright, artifacts):
    from hotspot.db import make_engine
    from hotspot.vouchers.batches import create_batch
    from hotspot.vouchers.keys import load_key

    phone = village.bed.phones[1]
    engine = make_engine(village.db_url)
    code = create_batch(engine, load_key(village.voucher_key), "harian", 1).codes[0]
    engine.dispose()
    browser = launch(playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(1))
    try:
        ctx = phone_context(browser, lang="en-US")
        page = ctx.new_page()
        page.goto(f"http://{UPSTREAM_IP}/index.html")
        assert page.url.startswith(PORTAL + "/?to=")
        assert page.locator("html").get_attribute("lang") == "en"  # from Accept-Language
        page.fill("#code", "2345 6789 ab")  # a wrong one first
        page.click("#voucher button")
        assert page.locator("#voucher-error").is_visible()
        shot(page, artifacts, "en-1-voucher-wrong")
        page.fill("#code", " " + code.lower().replace("-", " "))
        shot(page, artifacts, "en-2-voucher-typed")
        page.click("#voucher button")
        assert page.url.startswith(PORTAL + "/ok")
        assert "Your voucher Harian is active until" in page.inner_text("main")
        shot(page, artifacts, "en-3-voucher-success")
        session = village.call("client", ip=phone.ip)["session"]
        assert session["tier"] == "premium" and session["source"] == "voucher"
        assert session["bytes_limit"] == 1000 * 1000 * 1000 and session["voucher_id"]
        page.click("#continue")
        page.wait_for_url(f"http://{UPSTREAM_IP}/index.html")
        assert page.inner_text("h1") == "upstream ok"
        page.goto(PORTAL + "/")
        assert "Premium (voucher)" in page.inner_text("main")
        shot(page, artifacts, "en-4-voucher-status")
        page.goto(PORTAL + "/?lang=id")
        shot(page, artifacts, "id-4-voucher-status")
    finally:
        browser.close()
