"""Headless Chromium (Debian's, driven by Playwright) against the real portal.

Every test here is skipped, saying why, when Chromium or Playwright is missing; the
end-to-end tests also need root (network namespaces). Chromium never reaches beyond
loopback or the test's own namespaces: its background services are off and every host
name resolves to nothing (the tests use IP addresses).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hotspot import config as config_mod
from tests.netns.conftest import GatewayProcess
from tests.netns.helpers import curl_report
from testsupport import testbed as tb

CHROMIUM = os.environ.get("HOTSPOT_CHROMIUM", "/usr/bin/chromium")
PORTAL = "http://10.10.0.1:8080"  # the portal of the simulated village
VILLAGE_TOOLS = ("ip", "nft", "tc", "conntrack", "curl")
PHONE = {"width": 360, "height": 740}
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,CaptivePortalDetection",
]


def _why_not() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the Python package playwright (pip install playwright; no browser download)"
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        return f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    reason = _why_not()
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def launch(
    pw, hosts: tuple[str, ...], names: dict[str, str] | None = None, executable: str = CHROMIUM
):
    """A fresh Chromium (Playwright gives it a new, temporary user-data-dir) that can reach
    only the IP addresses ``hosts``; ``names`` maps host names to one of them (a stand-in for
    DNS); every other name or address resolves to nothing."""
    rules = ", ".join(
        [f"MAP {n} {ip}" for n, ip in (names or {}).items()]
        + ["MAP * ~NOTFOUND"]
        + [f"EXCLUDE {h}" for h in hosts]
    )
    return pw.chromium.launch(
        executable_path=executable,
        args=ARGS + [f"--host-resolver-rules={rules}"],
        headless=True,
        timeout=60_000,
    )


def phone_context(browser, *, javascript: bool = False, lang: str = "id-ID"):
    """A cheap Android phone: 360 px wide, touch, Indonesian by default, JavaScript off."""
    return browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        java_script_enabled=javascript,
        locale=lang,
        user_agent="Mozilla/5.0 (Linux; Android 11; Redmi 9A) "
        "AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0 Mobile Safari/537.36",
    )


def page_width(browser, url: str, cookies: list[dict[str, Any]] | None = None) -> int:
    """The width of the page at ``url`` in a 360 px phone with script on (for measuring
    only), sending ``cookies`` (a console login) if given."""
    ctx = phone_context(browser, javascript=True)
    if cookies:
        ctx.add_cookies(cookies)
    page = ctx.new_page()
    page.goto(url)
    width = page.evaluate("document.documentElement.scrollWidth")
    ctx.close()
    return width


def watch_static(page, problems: list[str]) -> None:
    """Note in ``problems`` every asset of the portal (``/static/``) that does not load."""
    page.on(
        "response",
        lambda resp: (
            problems.append(f"failed: {resp.url} {resp.status}")
            if "/static/" in resp.url and resp.status not in (200, 304)
            else None
        ),
    )


def watched_phone(browser, problems: list[str], **context: Any):
    """A new phone (``phone_context``'s settings, ``context`` passed on) and its first page,
    whose portal assets that do not load are noted in ``problems``."""
    ctx = phone_context(browser, **context)
    page = ctx.new_page()
    watch_static(page, problems)
    return ctx, page


def console_login(page, base: str, name: str, password: str, lands: str = r"/operator/?$") -> None:
    """Sign in to the operator console at ``base`` through its login form, then wait for the
    page the role lands on (``lands``, a regular expression on the URL: an agent's home is
    not the console's)."""
    page.goto(base + "/operator/")
    page.fill("#f-name", name)
    page.fill("#f-password", password)
    page.click("form[action='/operator/login'] button")
    page.wait_for_url(re.compile(lands))


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def which(tool: str) -> bool:
    return shutil.which(tool) is not None


# -- the simulated village (root) ---------------------------------------------------------


def village_marks(*tools: str) -> list[pytest.MarkDecorator]:
    """A test in the simulated village needs root and :data:`VILLAGE_TOOLS` (and ``tools``);
    without them it is skipped, saying why."""
    needed = VILLAGE_TOOLS + tools
    return [
        pytest.mark.root,
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables"),
        pytest.mark.skipif(
            any(shutil.which(t) is None for t in needed), reason=f"needs {', '.join(needed)}"
        ),
    ]


class Village(GatewayProcess):
    """The real gateway (and, once started, the portal) in a simulated village, and Chromium
    run inside its phones' namespaces."""

    def __init__(self, bed: tb.Testbed, workdir: Path, overrides: dict[str, Any]):
        super().__init__(bed, workdir, overrides)
        self.db_url: str = self.settings["database"]["url"]
        self.voucher_key = Path(self.settings["portal"]["voucher_key_file"])

    def curl(self, phone: int, url: str) -> str:
        """``"<status> <redirect>"`` of a GET of ``url`` from the phone."""
        return curl_report(
            self.bed, self.bed.phones[phone].ns, url, "%{http_code} %{redirect_url}", timeout=5
        )

    def chromium_in(self, phone: int) -> str:
        """An executable that runs Chromium inside the phone's namespace."""
        path = self.workdir / f"chromium-{phone}"
        path.write_text(
            f'#!/bin/sh\nexec ip netns exec {self.bed.phones[phone].ns} {CHROMIUM} "$@"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)


@contextmanager
def simulated_village(
    tmp_path: Path, base: str, pages: dict[str, bytes], overrides: dict[str, Any]
) -> Iterator[Village]:
    """A village in namespaces ``<base>-<pid>-…`` with two phones, an upstream serving
    ``pages`` (file name → content), and the real gateway and portal on the testbed's
    settings with ``overrides`` merged in. The tails of their logs are printed at the end."""
    tb.remove_stale_testbeds(base)
    bed = tb.Testbed(prefix=tb.run_prefix(base), clients=2)
    bed.build()
    village = None
    try:
        webroot = tmp_path / "www"
        webroot.mkdir()
        for name, content in pages.items():
            (webroot / name).write_bytes(content)
        bed.start_upstream(webroot, iperf=False)
        common = {
            "village": {"name": "Desa Sungai Duren"},
            "portal": tb.portal_settings(tmp_path, workers=2),
        }
        village = Village(bed, tmp_path, config_mod.merge(common, overrides))
        village.start()
        village.start_portal()
        yield village
    finally:
        if village is not None:
            village.stop()
        bed.destroy()
        for name in ("gateway.log", "portal.log"):
            if (tmp_path / name).exists():
                print(f"--- {name}\n" + (tmp_path / name).read_text()[-3000:])
