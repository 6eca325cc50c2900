"""Sales per local month and package, from the voucher tables, delivered to the collector."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from collector.models import SalesMonthly
from hotspot.model import Package, Voucher, VoucherBatch
from sync.agent import Agent
from sync.sales import monthly_sales
from tests.unit.collector.helpers import FlaskTransport


def sell(
    db, package: str, price: int, times: list[tuple[dt.datetime | None, dt.datetime | None, str]]
):
    with Session(db) as s, s.begin():
        pkg = s.query(Package).filter_by(name=package).one_or_none()
        if pkg is None:
            pkg = Package(name=package, title=package, price=price, tier="premium", hours=24)
            s.add(pkg)
            s.flush()
        batch = VoucherBatch(
            package_id=pkg.id,
            package_name=package,
            price=price,
            tier="premium",
            hours=24,
            data_mb=None,
            devices=1,
            count=len(times),
            salt="00" * 16,
        )
        s.add(batch)
        s.flush()
        for i, (sold, used, state) in enumerate(times, start=1):
            s.add(
                Voucher(
                    batch_id=batch.id,
                    serial=i,
                    code_hash=f"{package}{batch.id}-{i}",
                    state=state,
                    sold_at=sold,
                    first_used_at=used,
                )
            )


def test_months_are_local_and_void_or_unsold_do_not_count(gwcfg, gwdb):
    assert monthly_sales(gwcfg, gwdb) == []
    # 2026-11-30 18:00 UTC is 2026-12-01 01:00 in Jakarta
    sell(
        gwdb,
        "harian",
        5000,
        [
            (dt.datetime(2026, 11, 10, 3), None, "new"),  # sold at the kiosk, not used yet
            (None, dt.datetime(2026, 11, 12, 3), "active"),  # used = sold
            (None, dt.datetime(2026, 11, 30, 18), "active"),  # December, locally
            (dt.datetime(2026, 11, 11, 3), dt.datetime(2026, 11, 11, 4), "void"),  # refunded
            (None, None, "new"),  # on the shelf
        ],
    )
    sell(gwdb, "mingguan", 25000, [(None, dt.datetime(2026, 11, 20, 3), "merged")])
    got = monthly_sales(gwcfg, gwdb)
    assert got == [
        {"kind": "sales", "month": "2026-11", "package": "harian", "count": 2, "rupiah": 10000},
        {"kind": "sales", "month": "2026-11", "package": "mingguan", "count": 1, "rupiah": 25000},
        {"kind": "sales", "month": "2026-12", "package": "harian", "count": 1, "rupiah": 5000},
    ]
    assert [
        r["month"] for r in monthly_sales(gwcfg, gwdb, since=dt.datetime(2026, 11, 30, 20))
    ] == ["2026-12"]


def test_sales_reach_the_collector_and_corrections_replace(gwcfg, gwdb, app, cdb):
    sell(gwdb, "harian", 5000, [(None, dt.datetime(2026, 11, 12, 3), "active")])
    a = Agent(gwcfg, gwdb, transport=FlaskTransport(app))
    a.collect(with_health=False)
    assert a.drain(max_failures=1).ok
    sell(gwdb, "harian", 5000, [(None, dt.datetime(2026, 11, 13, 3), "active")] * 2)
    a.collect(full=True, with_health=False)
    assert a.drain(max_failures=1).ok
    with Session(cdb) as s:
        row = s.query(SalesMonthly).one()
    assert (row.month, row.package, row.count, row.rupiah) == ("2026-11", "harian", 3, 15000)
