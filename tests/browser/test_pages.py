"""Every page of the portal in a 360 px phone browser with JavaScript off, in Bahasa
Indonesia and in English: screenshots for a person to look at, and checks that need a real
browser (no CSP violation, nothing wider than the screen, forms that work without script).

The portal runs in this process on loopback (LAN 127.0.0.0/18, the portal at 127.0.0.2, the
browser's address 127.0.0.1 is "a phone"), with the real session engine on a fake data path.
No root needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.db import open_database
from hotspot.units import MB
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.packages import sync_packages
from portal import create_app
from portal.startup import prepare
from tests.browser.conftest import launch, page_width, phone_context, shot, watch_static
from tests.unit.fakes import FakeDataPath
from tests.unit.portal.conftest import PACKAGES
from tests.unit.portal.fakes import LocalGateway

PORTAL_IP = "127.0.0.2"
PHONE_IP = "127.0.0.1"
PHONE_MAC = "02:00:00:00:00:01"
KEY = b"v" * 32
# Hosts a phone asks for before login: the browser resolves them to the portal, as the
# gateway's NAT would deliver them there.
ELSEWHERE = ("connectivitycheck.gstatic.com", "berita.example")


class Portal:
    """The portal serving on loopback, and what stands behind it."""

    def __init__(self, port: int, engine, datapath, gw, db) -> None:
        self.base = f"http://{PORTAL_IP}:{port}"
        self.engine, self.datapath, self.gw, self.db, self.port = engine, datapath, gw, db, port


@contextmanager
def loopback_portal(tmp_path, portal: dict | None = None, **sections) -> Iterator[Portal]:
    """The portal on loopback at ``PORTAL_IP`` (a free port), with the real session engine on
    a fake data path that knows the phone; ``portal`` adds to its [portal] settings and
    ``sections`` are further configuration sections (``packages`` among them)."""
    with __import__("socket").socket() as s:
        s.bind((PORTAL_IP, 0))
        port = s.getsockname()[1]
    cfg = config_mod.load(
        overrides={
            "village": {"name": "Desa Sungai Duren"},
            "network": {"lan_address": f"{PORTAL_IP}/18", "portal_port": port},
            "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
            "control": {"socket": str(tmp_path / "control.sock")},
            "portal": {
                "secret_key_file": str(tmp_path / "s"),
                "voucher_key_file": str(tmp_path / "v"),
                **(portal or {}),
            },
            **sections,
        }
    )
    db = open_database(cfg.database.url)
    datapath = FakeDataPath(network="127.0.0.0/18")
    datapath.neighbours[PHONE_IP] = PHONE_MAC
    engine = SessionEngine(cfg, db, datapath)
    engine.start()
    gw = LocalGateway(engine)
    sync_packages(db, cfg.packages.values())
    app = create_app(state=prepare(cfg, gateway=gw, db=db, voucher_key=KEY, secret_key=b"s" * 32))
    server = make_server(PORTAL_IP, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Portal(port, engine, datapath, gw, db)
    finally:
        server.shutdown()
        db.dispose()


@pytest.fixture
def portal(tmp_path):
    with loopback_portal(
        tmp_path,
        portal={
            "contact": "Kios BUMDes, Pak Budi — WA 0812-7400-1234",
            "terms": "Layanan buka 24 jam. Kios buka pukul 08.00–17.00.",
        },
        # the unit tests' packages, less the one with a one-day shelf life
        packages={k: PACKAGES[k] for k in ("harian", "mingguan", "keluarga")},
    ) as p:
        yield p


def _watch(page, problems: list[str]) -> None:
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    # An asset of the portal that does not load. (The test's own next navigation aborts what
    # is still loading: net::ERR_ABORTED is not a problem of the page.)
    page.on(
        "requestfailed",
        lambda req: (
            problems.append(f"failed: {req.url} {req.failure}")
            if "ERR_ABORTED" not in (req.failure or "")
            else None
        ),
    )
    watch_static(page, problems)


def test_every_page_in_both_languages(playwright, portal, artifacts):
    browser = launch(playwright, (PORTAL_IP,), {h: PORTAL_IP for h in ELSEWHERE})
    shots = []
    problems: list[str] = []
    try:
        for lang in ("id", "en"):
            ctx = phone_context(browser, lang="id-ID" if lang == "id" else "en-US")
            page = ctx.new_page()
            _watch(page, problems)
            base = portal.base

            # An OS probe to another host lands on the splash through the captive redirect.
            page.goto(f"http://connectivitycheck.gstatic.com:{portal.port}/generate_204")
            assert page.url.startswith(base + "/?to=")
            assert page.locator("html").get_attribute("lang") == lang
            shots.append(shot(page, artifacts, f"{lang}-1-splash"))
            assert page_width(browser, page.url) <= 360

            # A mistyped voucher: the message, the code kept for correcting.
            page.fill("#code", "abcd efgh jk")
            page.click("#voucher button")
            assert page.locator("#voucher-error").is_visible()
            shots.append(shot(page, artifacts, f"{lang}-2-voucher-wrong"))

            page.goto(base + "/info")
            shots.append(shot(page, artifacts, f"{lang}-3-info"))

            # Accept: the success page offers the way back to where the phone was going.
            page.goto(f"http://berita.example:{portal.port}/hari-ini")
            page.click("form[action='/accept'] button")
            page.wait_for_load_state()
            assert "/ok" in page.url
            cont = page.locator("#continue")
            assert cont.get_attribute("href") == f"http://berita.example:{portal.port}/hari-ini"
            shots.append(shot(page, artifacts, f"{lang}-4-success"))

            page.goto(base + "/")
            assert page.locator("form[action='/logout'] button").is_visible()
            shots.append(shot(page, artifacts, f"{lang}-5-status"))
            assert page_width(browser, base + "/") <= 360

            # Disconnect, then the day's free allowance runs out.
            page.click("form[action='/logout'] button")
            shots.append(shot(page, artifacts, f"{lang}-6-disconnected"))
            page.click("form[action='/accept'] button")
            portal.datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
            portal.engine.tick(force_flush=True)
            page.goto(base + "/")
            shots.append(shot(page, artifacts, f"{lang}-7-allowance-used-up"))

            # A voucher still works then.
            code = create_batch(portal.db, KEY, "harian", 1).codes[0]
            page.fill("#code", code.lower().replace("-", " "))
            page.click("#voucher button")
            shots.append(shot(page, artifacts, f"{lang}-8-voucher-success"))
            page.goto(base + "/")
            shots.append(shot(page, artifacts, f"{lang}-9-voucher-status"))

            page.goto(base + "/no/such/page")
            shots.append(shot(page, artifacts, f"{lang}-10-not-found"))
            portal.gw.down = True
            page.goto(base + "/")
            shots.append(shot(page, artifacts, f"{lang}-11-gateway-down"))
            portal.gw.down = False
            portal.engine.block(mac=PHONE_MAC, reason="test")
            page.goto(base + "/")
            shots.append(shot(page, artifacts, f"{lang}-12-blocked"))
            portal.engine.unblock(mac=PHONE_MAC)
            # next language: a fresh day for this phone
            from sqlalchemy import delete

            from hotspot.model import DailyUsage

            with portal.db.begin() as conn:
                conn.execute(delete(DailyUsage))
            portal.engine.pending.clear()
            ctx.close()
    finally:
        browser.close()
    assert not [p for p in problems if "Refused" in p or "Content Security Policy" in p], problems
    assert not [p for p in problems if p.startswith("failed")], problems
    assert len(shots) == 24
    for path in shots:
        assert path.stat().st_size > 5000
