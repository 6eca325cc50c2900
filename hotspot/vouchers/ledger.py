"""The sales ledger: what the BUMDes sold, when, by whom, for how much (whole Rupiah).

What counts as a sale (``[operator] sold_at``):

``kasir`` (default)
    A voucher is sold when a kasir marks it sold in the console (cash in hand). A voucher
    used before anyone marked it (the kasir forgot) is sold at its first use, with no kasir:
    the ledger shows it as "not recorded", so stock handed out without a record shows up.
``first-use``
    A voucher is sold at its first use (vouchers handed to resellers, paid later). Marking
    sold still records who took the cash, for the cash count, but the ledger's moment is the
    first use; a marked voucher nobody used yet is not in the ledger yet.

Either way a withdrawn (void) voucher is not a sale — voiding a sold voucher is a refund —
and the price is the one printed on its batch. Days and months are the village's
(``village.timezone``). ``sync/sales.py`` reports the same definition to the province.

The cash count (:func:`cash_count`) is always by the moment a kasir marked the voucher sold:
that is when the money changed hands.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from hotspot.config import Config
from hotspot.model import Voucher, VoucherBatch, VoucherState
from hotspot.model_operator import VoucherSale
from hotspot.timeutil import local_day, naive_utc
from hotspot.village_days import day_bounds, month_bounds

NOT_RECORDED = ""  # the kasir of a sale nobody marked


def sale_time(mode: str) -> Any:
    """The SQL expression of a voucher's sale moment (naive UTC; NULL = not sold)."""
    if mode == "first-use":
        return Voucher.first_used_at
    return func.coalesce(Voucher.sold_at, Voucher.first_used_at)


@dataclass(frozen=True)
class Sale:
    voucher_id: int
    batch_id: int
    serial: int
    package: str
    price: int
    at: dt.datetime  # naive UTC
    day: dt.date  # village time
    kasir: str  # NOT_RECORDED when no kasir marked it


def sales(
    engine: Engine, config: Config, first: dt.date | None = None, last: dt.date | None = None
) -> list[Sale]:
    """Every sale whose moment falls on local days ``first``..``last`` (None = open)."""
    tz = config.village.tz
    when = sale_time(config.operator.sold_at)
    q = (
        select(
            Voucher.id,
            Voucher.batch_id,
            Voucher.serial,
            VoucherBatch.package_name,
            VoucherBatch.price,
            when.label("at"),
            VoucherSale.operator,
        )
        .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
        .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
        .where(when.is_not(None), Voucher.state != VoucherState.VOID.value)
    )
    if first is not None or last is not None:
        lo, hi = day_bounds(first or dt.date(2000, 1, 1), last or dt.date(2999, 12, 31), tz)
        q = q.where(when >= lo, when < hi)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q.order_by(when, Voucher.id)):
            at = naive_utc(r.at)  # some SQLite paths hand back text
            out.append(
                Sale(
                    r.id,
                    r.batch_id,
                    r.serial,
                    r.package_name,
                    int(r.price or 0),
                    at,
                    local_day(at, tz),
                    r.operator or NOT_RECORDED,
                )
            )
    return out


def totals(rows: Iterable[Sale], key: Callable[[Sale], Any]) -> list[dict[str, Any]]:
    """``[{"key": …, "count": n, "rupiah": sum}]`` sorted by key."""
    acc: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for s in rows:
        t = acc[key(s)]
        t[0] += 1
        t[1] += s.price
    return [
        {"key": k, "count": c, "rupiah": r}
        for k, (c, r) in sorted(acc.items(), key=lambda kv: (kv[0] is None, kv[0]))
    ]


def by_day(rows: Iterable[Sale]) -> list[dict[str, Any]]:
    return totals(rows, lambda s: s.day)


def by_month(rows: Iterable[Sale]) -> list[dict[str, Any]]:
    return totals(rows, lambda s: s.day.strftime("%Y-%m"))


def by_package(rows: Iterable[Sale]) -> list[dict[str, Any]]:
    return totals(rows, lambda s: s.package)


def by_kasir(rows: Iterable[Sale]) -> list[dict[str, Any]]:
    return totals(rows, lambda s: s.kasir)


def cash_count(
    engine: Engine, config: Config, first: dt.date, last: dt.date
) -> list[dict[str, Any]]:
    """Cash per kasir per local day, by the moment each voucher was marked sold:
    ``{"day", "kasir", "count", "rupiah", "void_count", "void_rupiah", "net"}`` — vouchers
    marked that day, of which withdrawn since (refunds), and what should be in the drawer."""
    tz = config.village.tz
    lo, hi = day_bounds(first, last, tz)
    q = (
        select(VoucherSale.sold_at, VoucherSale.operator, VoucherSale.price, Voucher.state)
        .join(Voucher, Voucher.id == VoucherSale.voucher_id)
        .where(VoucherSale.sold_at >= lo, VoucherSale.sold_at < hi)
    )
    acc: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    with engine.connect() as conn:
        for at, kasir, price, state in conn.execute(q):
            t = acc[(local_day(naive_utc(at), tz), kasir)]
            t[0] += 1
            t[1] += int(price)
            if state == VoucherState.VOID.value:
                t[2] += 1
                t[3] += int(price)
    return [
        {
            "day": d,
            "kasir": k,
            "count": c,
            "rupiah": r,
            "void_count": vc,
            "void_rupiah": vr,
            "net": r - vr,
        }
        for (d, k), (c, r, vc, vr) in sorted(acc.items())
    ]


def month_report(engine: Engine, config: Config, month: str) -> dict[str, Any]:
    """``hotspot sales report --month 2026-11``: totals, by package, by kasir, by day."""
    first, last = month_bounds(month, config.village.tz)
    rows = sales(engine, config, first, last)
    return {
        "month": month,
        "sold_at": config.operator.sold_at,
        "village": config.village.name,
        "timezone": config.village.timezone,
        "count": len(rows),
        "rupiah": sum(s.price for s in rows),
        "by_package": [
            {"package": t["key"], "count": t["count"], "rupiah": t["rupiah"]}
            for t in by_package(rows)
        ],
        "by_kasir": [
            {"kasir": t["key"] or None, "count": t["count"], "rupiah": t["rupiah"]}
            for t in by_kasir(rows)
        ],
        "by_day": [
            {"day": t["key"].isoformat(), "count": t["count"], "rupiah": t["rupiah"]}
            for t in by_day(rows)
        ],
    }
