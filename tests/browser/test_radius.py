"""A villager with an account on a real FreeRADIUS (issue #16), in Chromium at 360 px, in a
simulated village (root only): the phone asks for a page upstream, is sent to the splash,
opens "Punya akun?", types a wrong password (the plain Indonesian page, the form kept to try
again), then the right one, reaches the success page and then the upstream page for real;
after Putuskan, a wrong password again is the same page and the phone stays outside.

    hsr-c1 (phone, Chromium) ── br-lan ── hsr-gw: gateway + portal ([radius] on)
                                              └── hsr-up: 198.51.100.10, http.server and
                                                  FreeRADIUS (tests/netns/radius)

FreeRADIUS, its accounts and the gateway's ``[radius]`` table come from the netns tier's
helpers (tests/netns/radius/conftest.py).
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
from tests.netns.helpers import wait_until
from tests.netns.radius import freeradius
from tests.netns.radius.conftest import radius_server_for, radius_settings
from testsupport.testbed import UPSTREAM_IP

pytestmark = [
    *village_marks(),
    pytest.mark.skipif(freeradius.available() is not None, reason=str(freeradius.available())),
]

UPSTREAM_PAGE = f"http://{UPSTREAM_IP}/index.html"


@pytest.fixture
def village(tmp_path):
    with simulated_village(
        tmp_path,
        "hsr",
        {"index.html": b"<!doctype html><title>Berita</title><h1>upstream ok</h1>"},
        {"radius": radius_settings(tmp_path)},
    ) as v:
        server = radius_server_for(v.bed, tmp_path).start()
        try:
            yield v, server
        finally:
            server.stop()


def test_account_login_then_the_internet_and_a_wrong_password(village, playwright, artifacts):
    village, server = village
    phone = village.bed.phones[0]
    browser = launch(playwright, (UPSTREAM_IP, "10.10.0.1"), executable=village.chromium_in(0))
    try:
        page = phone_context(browser).new_page()
        page.goto(UPSTREAM_PAGE)
        assert page.url.startswith(PORTAL + "/?to=")  # through the real NAT redirect
        shot(page, artifacts, "id-1-splash")

        # A wrong password first: said plainly in Indonesian, on the splash, the form kept
        # (with the name typed) to try again; nothing let out.
        account = page.locator("#account")
        account.scroll_into_view_if_needed()
        assert page.inner_text("#account-h") == "Punya akun?"
        page.fill("#username", "budi")
        page.fill("#password", "salah")
        # Shown as typed (account names are case-sensitive: only the voucher box shows
        # capitals), and the password box as wide and tall as the name's, for a thumb.
        assert page.locator("#username").evaluate("e => getComputedStyle(e).textTransform") == (
            "none"
        )
        name_box = page.locator("#username").bounding_box()
        password_box = page.locator("#password").bounding_box()
        assert name_box and password_box
        assert password_box["width"] == name_box["width"] > 250
        assert password_box["height"] == name_box["height"] >= 44
        shot(page, artifacts, "id-2-account-typed-wrong")
        page.click("#account button[type=submit]")
        assert page.url == PORTAL + "/radius"
        assert page.inner_text("#account-error") == (
            "Nama pengguna atau kata sandi salah. Periksa lalu coba lagi."
        )
        body = page.inner_text("body")
        assert "Traceback" not in body and "Internal Server Error" not in body
        assert page.input_value("#username") == "budi"
        assert page.input_value("#password") == ""
        assert page.get_attribute("#username", "aria-invalid") == "true"
        shot(page, artifacts, "id-3-account-wrong")
        assert village.call("client", ip=phone.ip)["session"] is None
        assert village.curl(0, UPSTREAM_PAGE).startswith("302 ")

        # The right password, typed into the same form: in.
        page.fill("#password", "rahasia")
        page.click("#account button[type=submit]")
        assert page.url.startswith(PORTAL + "/ok")
        assert page.inner_text("h1") == "Anda sudah tersambung"
        assert "Anda masuk sebagai budi sampai" in page.inner_text("main")  # not "voucher"
        shot(page, artifacts, "id-4-account-success")
        session = village.call("client", ip=phone.ip)["session"]
        assert session["mac"] == phone.mac and session["source"] == "radius"
        assert (session["down_kbps"], session["up_kbps"]) == (20_000, 4_000)  # budi's WISPr

        page.click("#continue")
        page.wait_for_url(UPSTREAM_PAGE)
        assert page.inner_text("h1") == "upstream ok"  # the real upstream host, for real
        shot(page, artifacts, "id-5-upstream")

        # Putuskan, then a wrong password on the way back in: the same plain page, and the
        # phone stays outside.
        page.goto(PORTAL + "/")
        page.click("form[action='/logout'] button")
        page.fill("#username", "budi")
        page.fill("#password", "rahasia-lama")
        page.click("#account button[type=submit]")
        assert page.inner_text("#account-error").startswith("Nama pengguna atau kata sandi salah")
        assert "Traceback" not in page.inner_text("body")
        assert page.locator("#account button[type=submit]").is_visible()
        shot(page, artifacts, "id-6-account-wrong-after-logout")
        assert village.call("client", ip=phone.ip)["session"] is None
    finally:
        browser.close()
    # FreeRADIUS has the session in its SQL, ended by the Putuskan: the login was its.
    wait_until(
        lambda: any(
            r["username"] == "budi" and r["acctterminatecause"] == "User-Request"
            for r in server.rows()
        ),
        15,
        what="the Stop record",
    )
