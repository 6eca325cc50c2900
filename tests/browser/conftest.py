"""Headless Chromium (Debian's, driven by Playwright) against the real portal.

Every test here is skipped, saying why, when Chromium or Playwright is missing; the
end-to-end tests also need root (network namespaces). Chromium never reaches beyond
loopback or the test's own namespaces: its background services are off and every host
name resolves to nothing (the tests use IP addresses).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HOTSPOT_CHROMIUM", "/usr/bin/chromium")
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


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def which(tool: str) -> bool:
    return shutil.which(tool) is not None
