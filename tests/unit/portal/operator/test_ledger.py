"""Sales arithmetic: what counts as sold (kasir or first use), village days and months, voids
as refunds, the cash count, the month report, and the province's report agreeing with it."""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot.audit import Actor
from hotspot.timeutil import local_day
from hotspot.village_days import day_bounds
from hotspot.vouchers import ledger
from hotspot.vouchers.batches import batch_info
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.sales import SaleError, cancel_sale, mark_batch_sold, mark_sold
from hotspot.vouchers.withdrawal import expire_unsold, void_batch, void_one
from sync.sales import monthly_sales
from tests.unit.portal.operator.conftest import OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC

SITI = Actor("siti", 2, "kasir")
ANI = Actor("ani", 3, "kasir")


def _id(db, key, code):
    return find_voucher(db, key, code)


def with_mode(cfg, mode):
    object.__setattr__(cfg.operator, "sold_at", mode)
    return cfg


def test_kasir_mode_counts_marks_then_first_use(db, key, cfg, clock, batch, vouchers):
    h = batch("harian", 4)  # Rp 5.000
    m = batch("mingguan", 2)  # Rp 25.000
    mark_sold(db, _id(db, key, h[0]), actor=SITI, clock=clock)
    mark_sold(db, _id(db, key, m[0]), actor=ANI, clock=clock)
    vouchers.redeem(h[1], ip=PHONE_IP, mac=PHONE_MAC)  # used, never marked
    mark_sold(db, _id(db, key, h[2]), actor=SITI, clock=clock)
    void_one(db, _id(db, key, h[2]), actor=Actor("budi", 1, "admin"), reason="refund")
    rows = ledger.sales(db, cfg)
    assert sorted((s.package, s.price, s.kasir) for s in rows) == [
        ("harian", 5000, ""),
        ("harian", 5000, "siti"),
        ("mingguan", 25000, "ani"),
    ]
    assert ledger.by_package(rows) == [
        {"key": "harian", "count": 2, "rupiah": 10000},
        {"key": "mingguan", "count": 1, "rupiah": 25000},
    ]
    assert ledger.by_kasir(rows) == [
        {"key": "", "count": 1, "rupiah": 5000},
        {"key": "ani", "count": 1, "rupiah": 25000},
        {"key": "siti", "count": 1, "rupiah": 5000},
    ]
    total = sum(s.price for s in rows)
    for view in (ledger.by_day, ledger.by_month, ledger.by_package, ledger.by_kasir):
        assert sum(r["rupiah"] for r in view(rows)) == total == 35000
        assert sum(r["count"] for r in view(rows)) == 3


def test_first_use_mode_counts_only_use(db, key, cfg, clock, batch, vouchers):
    with_mode(cfg, "first-use")
    h = batch("harian", 3)
    mark_sold(db, _id(db, key, h[0]), actor=SITI, clock=clock)  # paid, not used yet
    clock.advance(hours=1)
    mark_sold(db, _id(db, key, h[1]), actor=SITI, clock=clock)
    clock.advance(hours=1)
    vouchers.redeem(h[1], ip=PHONE_IP, mac=PHONE_MAC)
    vouchers.redeem(h[2], ip=OTHER_IP, mac=OTHER_MAC)  # handed out without a mark
    rows = ledger.sales(db, cfg)
    assert sorted(s.kasir for s in rows) == ["", "siti"]
    assert all(s.at == clock() for s in rows)  # the moment of first use
    # the cash count still counts by the mark: two vouchers, Rp 10.000 in siti's drawer
    cash = ledger.cash_count(
        db, cfg, local_day(clock(), cfg.village.tz), local_day(clock(), cfg.village.tz)
    )
    assert [(c["kasir"], c["count"], c["net"]) for c in cash] == [("siti", 2, 10000)]


def test_days_and_months_are_the_villages(db, key, cfg, clock, batch):
    tz = cfg.village.tz  # WIB, UTC+7
    codes = batch("harian", 3)
    clock.now = dt.datetime(2026, 11, 30, 16, 59, 0)  # 23.59 WIB on 30 Nov
    mark_sold(db, _id(db, key, codes[0]), actor=SITI, clock=clock)
    clock.now = dt.datetime(2026, 11, 30, 17, 0, 0)  # 00.00 WIB on 1 Dec
    mark_sold(db, _id(db, key, codes[1]), actor=SITI, clock=clock)
    clock.now = dt.datetime(2026, 10, 31, 17, 30, 0)  # 00.30 WIB on 1 Nov
    mark_sold(db, _id(db, key, codes[2]), actor=SITI, clock=clock)
    rows = ledger.sales(db, cfg)
    assert [r["key"] for r in ledger.by_day(rows)] == [
        dt.date(2026, 11, 1),
        dt.date(2026, 11, 30),
        dt.date(2026, 12, 1),
    ]
    assert ledger.by_month(rows) == [
        {"key": "2026-11", "count": 2, "rupiah": 10000},
        {"key": "2026-12", "count": 1, "rupiah": 5000},
    ]
    nov = ledger.sales(db, cfg, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert len(nov) == 2
    assert day_bounds(dt.date(2026, 12, 1), dt.date(2026, 12, 1), tz) == (
        dt.datetime(2026, 11, 30, 17, 0),
        dt.datetime(2026, 12, 1, 17, 0),
    )
    rep = ledger.month_report(db, cfg, "2026-11")
    assert rep["count"] == 2 and rep["rupiah"] == 10000
    assert [d["day"] for d in rep["by_day"]] == ["2026-11-01", "2026-11-30"]


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-11", "november", "", "2026-11-01"])
def test_month_must_be_a_month(db, cfg, bad):
    with pytest.raises(ValueError):
        ledger.month_report(db, cfg, bad)


def test_cash_count_shows_refunds(db, key, cfg, clock, batch):
    codes = batch("mingguan", 3)
    for c in codes:
        mark_sold(db, _id(db, key, c), actor=SITI, clock=clock)
    void_one(db, _id(db, key, codes[0]), actor=Actor("budi", 1, "admin"), reason="refund")
    day = local_day(clock(), cfg.village.tz)
    [row] = ledger.cash_count(db, cfg, day, day)
    assert (row["count"], row["rupiah"], row["void_count"], row["void_rupiah"], row["net"]) == (
        3,
        75000,
        1,
        25000,
        50000,
    )
    assert sum(s.price for s in ledger.sales(db, cfg)) == row["net"]


def test_a_voucher_is_sold_once(db, key, clock, batch):
    code = batch("harian", 1)[0]
    vid = _id(db, key, code)
    mark_sold(db, vid, actor=SITI, clock=clock)
    with pytest.raises(SaleError) as err:
        mark_sold(db, vid, actor=ANI, clock=clock)
    assert err.value.code == "voucher-sold"
    cancel_sale(db, vid, actor=Actor("budi", 1, "admin"), reason="typo", clock=clock)
    mark_sold(db, vid, actor=ANI, clock=clock)
    void_one(db, vid, actor=Actor("budi", 1, "admin"), reason="lost")
    with pytest.raises(SaleError) as err:
        mark_sold(db, vid, actor=SITI, clock=clock)
    assert err.value.code == "voucher-void"


def test_a_used_voucher_keeps_its_sale(db, key, clock, batch, vouchers):
    code = batch("harian", 1)[0]
    vid = _id(db, key, code)
    mark_sold(db, vid, actor=SITI, clock=clock)
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    with pytest.raises(SaleError) as err:
        cancel_sale(db, vid, actor=Actor("budi", 1, "admin"), clock=clock)
    assert err.value.code == "voucher-used"


def test_marking_a_range(db, key, clock, batch):
    batch("harian", 10)
    marked, skipped = mark_batch_sold(db, 1, 3, 7, actor=SITI, clock=clock)
    assert (marked, skipped) == (5, 0)
    marked, skipped = mark_batch_sold(db, 1, 9, 5, actor=ANI, clock=clock)  # reversed
    assert (marked, skipped) == (2, 3)
    assert batch_info(db, 1)["states"] == {"new": 3, "sold": 7, "used": 0, "void": 0}


@pytest.mark.parametrize("mode", ["kasir", "first-use"])
def test_the_province_sees_the_same_sales(db, key, cfg, clock, batch, vouchers, mode):
    with_mode(cfg, mode)
    h = batch("harian", 3)
    m = batch("mingguan", 1)
    mark_sold(db, _id(db, key, h[0]), actor=SITI, clock=clock)
    mark_sold(db, _id(db, key, m[0]), actor=SITI, clock=clock)
    vouchers.redeem(h[1], ip=PHONE_IP, mac=PHONE_MAC)
    vouchers.redeem(m[0], ip=OTHER_IP, mac=OTHER_MAC)
    report = {(r["month"], r["package"]): (r["count"], r["rupiah"]) for r in monthly_sales(cfg, db)}
    rows = ledger.sales(db, cfg)
    mine: dict = {}
    for s in rows:
        k = (s.day.strftime("%Y-%m"), s.package)
        c, r = mine.get(k, (0, 0))
        mine[k] = (c + 1, r + s.price)
    assert report == mine
    expected = {
        "kasir": {("2026-11", "harian"): (2, 10000), ("2026-11", "mingguan"): (1, 25000)},
        "first-use": {("2026-11", "harian"): (1, 5000), ("2026-11", "mingguan"): (1, 25000)},
    }[mode]
    assert report == expected


def test_unsold_stock_expires_but_sold_stock_stays(db, key, clock, batch, vouchers):
    codes = batch("basi", 3)  # shelf life 1 day
    mark_sold(db, _id(db, key, codes[0]), actor=SITI, clock=clock)
    assert expire_unsold(db, clock=clock) == 0
    clock.advance(days=1, seconds=1)
    assert expire_unsold(db, clock=clock) == 2
    assert expire_unsold(db, clock=clock) == 0
    states = batch_info(db, 1)["states"]
    assert states == {"new": 0, "sold": 1, "used": 0, "void": 2}
    with pytest.raises(VoucherError) as err:
        vouchers.redeem(codes[1], ip=PHONE_IP, mac=PHONE_MAC)
    assert err.value.code == "voucher-expired"  # not "cancelled": it just waited too long


def test_void_batch_keeps_sold_and_running_unless_asked(db, key, clock, batch, vouchers, gw):
    codes = batch("harian", 4)
    mark_sold(db, _id(db, key, codes[0]), actor=SITI, clock=clock)
    vouchers.redeem(codes[1], ip=PHONE_IP, mac=PHONE_MAC)
    out = void_batch(db, 1, actor=Actor("budi", 1, "admin"), reason="sheet lost", clock=clock)
    assert (out["voided"], out["kept"], out["devices"]) == (2, 2, [])
    out = void_batch(
        db, 1, actor=Actor("budi", 1, "admin"), reason="all", include_sold=True, clock=clock
    )
    assert (out["voided"], out["sold_voided"], out["running_voided"]) == (2, 1, 1)
    assert out["devices"] == [PHONE_MAC]
