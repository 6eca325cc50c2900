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

import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from hotspot.control import ControlClient
from tests.browser.conftest import CHROMIUM, launch, phone_context, shot
from testsupport import testbed as tb
from testsupport.testbed import UPSTREAM_IP, write_toml

PORTAL = "http://10.10.0.1:8080"
TOOLS = ("ip", "nft", "tc", "conntrack", "curl")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]


class Village:
    def __init__(self, bed: tb.Testbed, workdir: Path):
        self.bed = bed
        self.workdir = workdir
        self.config = workdir / "hotspot.toml"
        self.socket = workdir / "control.sock"
        self.db_url = f"sqlite:///{workdir}/hotspot.db"
        self.voucher_key = workdir / "voucher.key"

    def hotspot(self, *args: str, log: str):
        return self.bed.popen(
            self.bed.gw,
            sys.executable,
            "-m",
            "hotspot_cli",
            "--config",
            str(self.config),
            *args,
            log_path=self.workdir / log,
        )

    def call(self, op: str, **args):
        with ControlClient(str(self.socket)) as ctl:
            return ctl.call(op, **args)

    def curl(self, phone: int, url: str) -> str:
        out = self.bed.run(
            self.bed.phones[phone].ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-m",
            "5",
            url,
            check=False,
        )
        return out.stdout.strip()

    def chromium_in(self, phone: int) -> str:
        """An executable that runs Chromium inside the phone's namespace."""
        path = self.workdir / f"chromium-{phone}"
        path.write_text(
            f'#!/bin/sh\nexec ip netns exec {self.bed.phones[phone].ns} {CHROMIUM} "$@"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)


@pytest.fixture
def village(tmp_path):
    tb.remove_stale_testbeds("hsp")
    bed = tb.Testbed(prefix=tb.run_prefix("hsp"), clients=2)
    bed.build()
    try:
        webroot = tmp_path / "www"
        webroot.mkdir()
        (webroot / "index.html").write_text(
            "<!doctype html><title>Berita</title><h1>upstream ok</h1>"
        )
        bed.start_upstream(webroot, iperf=False)
        v = Village(bed, tmp_path)
        write_toml(
            v.config,
            {
                "village": {"name": "Desa Sungai Duren"},
                "network": {
                    "lan_interface": "br-lan",
                    "wan_interface": "eth0",
                    "lan_address": bed.lan_address,
                    "uplink_down_kbps": 100000,
                    "uplink_up_kbps": 100000,
                },
                "database": {"url": v.db_url},
                "control": {"socket": str(v.socket)},
                "gateway": {"tick_seconds": 0.5, "flush_seconds": 5},
                "portal": {
                    "user": "",
                    "workers": 2,
                    "secret_key_file": str(tmp_path / "portal.secret"),
                    "voucher_key_file": str(v.voucher_key),
                    "contact": "Kios BUMDes, Pak Budi — WA 0812-7400-1234",
                },
                # The kiosk's operator network (tests/browser/test_operator.py, #10.12).
                "operator": {"management_networks": ["192.168.88.0/24"]},
                "packages": {
                    "harian": {
                        "title": "Harian",
                        "price": 5000,
                        "tier": "premium",
                        "hours": 24,
                        "data_mb": 1000,
                    }
                },
            },
        )
        v.hotspot("gateway", "run", "--log-level", "DEBUG", log="gateway.log")
        deadline = time.monotonic() + 20
        while True:
            try:
                v.call("ping")
                break
            except Exception:  # noqa: BLE001 - still starting
                if time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "gateway.log").read_text())
                time.sleep(0.1)
        v.hotspot("portal", "run", log="portal.log")
        try:
            bed.wait_port(bed.gw, "10.10.0.1", 8080, timeout=30)
        except Exception:  # noqa: BLE001 - any failure to start: show the portal's log
            raise RuntimeError((tmp_path / "portal.log").read_text()) from None
        yield v
    finally:
        bed.destroy()
        for name in ("gateway.log", "portal.log"):
            if (tmp_path / name).exists():
                print(f"--- {name}\n" + (tmp_path / name).read_text()[-3000:])


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
