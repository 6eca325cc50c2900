"""The first page after login is the internet (issue #12, item 6), in a simulated village
(network namespaces, root only), with headless Chromium inside a phone's namespace.

A walled phone's browser opens its connections to the page it asked for while the gateway's
NAT sends them to the portal, and keeps them open (keep-alive, and sockets it opened ahead of
need). After login their conntrack entries would still carry the redirect: the next page
opened in the same tab would come from the portal again. The gateway deletes the device's
redirected entries at login, and the portal closes every connection it answers with a
redirect, so the next page opened right after the success page is the upstream one.
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

UPSTREAM_PAGE = b"<!doctype html><title>Berita</title><h1>upstream ok</h1>"


@pytest.fixture
def village(tmp_path):
    with simulated_village(
        tmp_path,
        "hsq",
        {"index.html": UPSTREAM_PAGE},
        {"packages": {"harian": PACKAGES["harian"]}},
    ) as v:
        yield v


def _voucher(village) -> str:
    from hotspot.db import make_engine
    from hotspot.vouchers.batches import create_batch
    from hotspot.vouchers.keys import load_key

    engine = make_engine(village.db_url)
    try:
        return create_batch(engine, load_key(village.voucher_key), "harian", 1).codes[0]
    finally:
        engine.dispose()


@pytest.mark.parametrize("way", ["free", "voucher"])
def test_the_next_page_in_the_same_tab_is_the_upstream_one(village, playwright, artifacts, way):
    phone_index = 0 if way == "free" else 1
    phone = village.bed.phones[phone_index]
    code = _voucher(village) if way == "voucher" else ""
    browser = launch(
        playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(phone_index)
    )
    try:
        page = phone_context(browser).new_page()
        # Walled: the page asked for comes from the portal, through the real NAT redirect
        # (the browser keeps the connection it opened to the upstream address).
        page.goto(f"http://{UPSTREAM_IP}/")
        assert page.url.startswith(PORTAL + "/?to=")
        if way == "free":
            page.click("form[action='/accept'] button")
        else:
            page.fill("#code", code)
            page.click("#voucher button")
        assert page.url.startswith(PORTAL + "/ok")
        assert page.inner_text("h1") == "Anda sudah tersambung"
        session = village.call("client", ip=phone.ip)["session"]
        assert session is not None and session["source"] == way
        # The next page, in the same tab, at once: the upstream host's, twice in a row.
        for attempt in (1, 2):
            page.goto(f"http://{UPSTREAM_IP}/")
            shot(page, artifacts, f"{way}-after-login-{attempt}")
            assert page.url == f"http://{UPSTREAM_IP}/", (attempt, page.url)
            assert page.inner_text("h1") == "upstream ok", attempt
    finally:
        browser.close()
