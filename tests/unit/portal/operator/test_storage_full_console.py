"""The console and a filling disk (issue #11, item 4): the overview warns from
``database.disk_warning_pct`` (90 %) on, still opens when the disk is full (the login's idle
clock cannot be written then), and a sale that cannot be saved says so and sells nothing."""

from __future__ import annotations

import re
from collections import namedtuple

import pytest

from hotspot import health
from hotspot.vouchers.sales import stock_by_package
from tests.unit.portal.operator.conftest import text
from tests.unit.storage_full import FullStorage

Usage = namedtuple("Usage", "total used free percent")
WARNING = "Penyimpanan hampir penuh"


@pytest.fixture
def disk(monkeypatch):
    """``disk.percent = …``: how full the database's filesystem looks."""

    class Disk:
        percent = 50.0

        def usage(self, _path):
            return Usage(100, int(self.percent), 100 - int(self.percent), self.percent)

    d = Disk()
    monkeypatch.setattr(health.psutil, "disk_usage", d.usage)
    return d


@pytest.mark.parametrize("percent, warned", [(50.0, False), (89.9, False), (90.0, True)])
def test_the_overview_warns_from_90_percent(admin, disk, percent, warned):
    disk.percent = percent
    resp = admin.get("/operator/")
    assert resp.status_code == 200
    assert ('id="disk-warning"' in resp.get_data(as_text=True)) is warned
    assert (WARNING in text(resp)) is warned


def test_the_console_opens_on_a_full_disk_and_a_sale_sells_nothing(admin, disk, db, clock, batch):
    batch("harian", 2)
    stock = stock_by_package(db, clock=clock)
    full = FullStorage(db)
    disk.percent = 100.0
    full.full = True
    clock.advance(minutes=5)  # the login's idle clock is due to be written, and cannot be
    home = admin.get("/operator/")
    assert home.status_code == 200 and WARNING in text(home)
    assert full.refused >= 1
    page = home.get_data(as_text=True)
    harian = next(f for f in page.split("<form")[1:] if "Harian" in f and "quick-sale" in f)
    token = re.search(r'name="token" value="([^"]+)"', harian).group(1)
    package = re.search(r'name="package" value="([^"]+)"', harian).group(1)
    sale = admin.form(
        "/operator/quick-sale", {"token": token, "package": package}, page="/operator/"
    )
    assert sale.status_code == 503
    assert "Penyimpanan gateway penuh" in text(sale) and "Traceback" not in text(sale)
    full.full = False
    assert stock_by_package(db, clock=clock) == stock
