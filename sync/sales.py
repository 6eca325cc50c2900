"""What the BUMDes sold, per local month and package: the ``sales`` records of the report.

A voucher counts as sold as ``hotspot.vouchers.ledger`` defines it (``[operator] sold_at``): by
default in the month (village time) of ``sold_at`` when a kasir recorded the sale, else of its
first use (a used voucher was paid for); with ``sold_at = "first-use"`` in the month of its
first use. Voided vouchers do not count. Rupiah is the price printed on the voucher's batch.

This reads the voucher tables of ``hotspot.vouchers`` and returns nothing while they do not
exist (an older database, or a build without vouchers): detection by import and by table
presence, so it never fails a sync cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.timeutil import local_time, naive_utc

log = logging.getLogger(__name__)


def _tables_present(db: Engine) -> bool:
    try:
        from hotspot.model import Voucher, VoucherBatch  # noqa: F401 - presence check
    except ImportError:
        return False
    names = set(inspect(db).get_table_names())
    return {"voucher", "voucher_batch"} <= names


def monthly_sales(
    config: Config, db: Engine, since: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """``[{"kind": "sales", "month": "2026-11", "package": "harian", "count": 3, "rupiah":
    15000}, …]`` for every month with a sale at or after ``since`` (naive UTC; None = all).
    Months are whole: ``since`` is moved back to the start of its local month."""
    if not _tables_present(db):
        return []
    from hotspot.model import Voucher, VoucherBatch, VoucherState

    tz = config.village.tz
    from hotspot.vouchers.ledger import sale_time

    when = sale_time(config.operator.sold_at)
    q = (
        select(when, VoucherBatch.package_name, VoucherBatch.price)
        .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
        .where(when.is_not(None), Voucher.state != VoucherState.VOID.value)
    )
    if since is not None:
        local = local_time(since, tz)
        start = dt.datetime(local.year, local.month, 1, tzinfo=tz)
        q = q.where(when >= naive_utc(start))
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    with Session(db) as s:
        for ts, package, price in s.execute(q):
            ts = naive_utc(ts)  # some SQLite paths hand back text
            month = local_time(ts, tz).strftime("%Y-%m")
            t = totals[(month, package)]
            t[0] += 1
            t[1] += int(price or 0)
    return [
        {"kind": "sales", "month": m, "package": p, "count": c, "rupiah": r}
        for (m, p), (c, r) in sorted(totals.items())
    ]
