"""Issue #13 item 2, no retyping, end to end (root): headless Chromium at 360 px inside a
phone's namespace, the real gateway and portal.

* A voucher phone comes back under a new random MAC (alamat acak): the splash says
  "Lanjutkan paket Anda (sisa …)"; one tap, no code → online.
* The free tier accepted once: the phone leaves (its session idles out) and comes back the
  same day → its OS's connectivity probe lets it out, the page it opens is the real one, no
  terms page; under a new random MAC (its device cookie along)
  → one tap "Lanjutkan internet gratis", without the terms.
"""

from __future__ import annotations

import time

from tests.browser.conftest import PORTAL, launch, phone_context, shot, village_marks
from tests.browser.test_device_cookie import change_mac, village  # noqa: F401 - the fixture
from testsupport.testbed import UPSTREAM_IP

pytestmark = village_marks("ping")

HOSTS = (UPSTREAM_IP, "10.10.0.1")


def went_away(village, phone: int) -> None:
    """The phone's session idles out (it left); the gateway unpins its address."""
    p = village.bed.phones[phone]
    village.call("deauthorize", mac=p.mac, reason="idle-timeout")
    village.bed.run(village.bed.gw, "ip", "neigh", "flush", "to", p.ip, "dev", "br-lan")


def online_without_a_click(village, page, phone: int) -> None:
    """The phone is back: on reassociation its OS probes the network (plain HTTP, which the
    walled path takes to the portal — the sign of use the gateway waits for; being on the
    LAN is not enough), a tick later it is out. The page the villager then opens is the
    real one: no portal page, no tap."""
    p = village.bed.phones[phone]
    village.bed.run(p.ns, "ping", "-c", "1", "-W", "2", "10.10.0.1", check=False)
    time.sleep(1)  # two ticks: on the LAN, but not used yet
    assert (village.call("client", ip=p.ip)["session"] or {}).get("mac") != p.mac
    probe = f"http://{UPSTREAM_IP}/generate_204"  # what Android asks on reassociation
    village.bed.run(p.ns, "curl", "-s", "-o", "/dev/null", "-m", "3", probe, check=False)
    deadline = time.monotonic() + 10
    while (village.call("client", ip=p.ip)["session"] or {}).get("mac") != p.mac:
        assert time.monotonic() < deadline, "the returning phone was not let out"
        time.sleep(0.2)
    page.goto(f"http://{UPSTREAM_IP}/index.html?back={time.monotonic_ns()}")
    assert "upstream ok" in page.inner_text("body"), page.url


def test_voucher_new_random_mac_one_tap(village, playwright, artifacts):
    from hotspot.db import make_engine
    from hotspot.vouchers.batches import create_batch
    from hotspot.vouchers.keys import load_key

    engine = make_engine(village.db_url)
    code = create_batch(engine, load_key(village.voucher_key), "harian", 1).codes[0]
    engine.dispose()
    browser = launch(playwright, HOSTS, executable=village.chromium_in(0))
    try:
        page = phone_context(browser).new_page()
        page.goto(f"http://{UPSTREAM_IP}/index.html")
        page.fill("#code", code)
        page.click("#voucher button")
        assert page.url.startswith(PORTAL + "/ok")

        # A new random MAC (and a new address): the splash offers the package, one tap.
        # (The portal's address: the upstream page may be in Chromium's cache.)
        change_mac(village, 0, "02:00:00:00:79:01", new_address=True)
        page.goto(PORTAL + "/")
        button = page.locator("#resume button")
        assert "Lanjutkan paket Anda (sisa 23 jam" in button.inner_text()
        shot(page, artifacts, "retype-1-new-mac-one-tap")
        button.click()
        assert page.url.startswith(PORTAL + "/ok"), page.inner_text("main")
        session = village.call("client", ip=village.bed.phones[0].ip)["session"]
        assert session["mac"] == "02:00:00:00:79:01" and session["source"] == "voucher"

        # The same (new) MAC leaves and comes back → online, no portal.
        went_away(village, 0)
        online_without_a_click(village, page, 0)
    finally:
        browser.close()


def test_free_terms_once_a_day(village, playwright, artifacts):
    browser = launch(playwright, HOSTS, executable=village.chromium_in(0))
    try:
        page = phone_context(browser).new_page()
        page.goto(f"http://{UPSTREAM_IP}/index.html")
        assert page.url.startswith(PORTAL + "/")
        assert page.locator("#agree").count() == 1  # the terms, the first time
        page.click("form[action='/accept'] button")
        assert "Anda sudah tersambung" in page.inner_text("main")

        # It leaves and comes back the same day: straight online, no terms page.
        went_away(village, 0)
        online_without_a_click(village, page, 0)

        # Its session ends; the phone is back under a new random MAC with its cookie:
        # one tap, no terms.
        village.call("deauthorize", mac=village.bed.phones[0].mac, reason="session-timeout")
        change_mac(village, 0, "02:00:00:00:79:02", new_address=True)
        page.goto(PORTAL + "/")
        main = page.inner_text("main")
        assert "Anda sudah menyetujui aturan pemakaian hari ini" in main
        assert page.locator("#agree").count() == 0
        shot(page, artifacts, "retype-2-free-again-one-tap")
        page.click("#free-again button")
        assert "Anda sudah tersambung" in page.inner_text("main")
        assert village.call("client", ip=village.bed.phones[0].ip)["session"]["source"] == "free"
    finally:
        browser.close()
