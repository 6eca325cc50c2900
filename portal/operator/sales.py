"""The sales ledger (*Penjualan*, admins): today, days, months, packages, kasir, the cash
count; charts; CSV."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from flask_babel import gettext

from hotspot.usage import usage_by_day
from hotspot.vouchers import ledger
from portal import fmt
from portal.operator import svg
from portal.operator.blueprint import admin_only, bp, cfg
from portal.operator.pages import csv_response, page, parse_day, today_local
from portal.state import state

VIEWS = ("today", "days", "months", "packages", "kasir", "cash")


def _range(view: str) -> tuple[dt.date, dt.date]:
    today = today_local()
    default_first = {"today": today, "months": today.replace(day=1) - dt.timedelta(days=334)}.get(
        view, today - dt.timedelta(days=29)
    )
    first = parse_day(request.args.get("from"), default_first)
    last = parse_day(request.args.get("to"), today)
    if view == "today":
        first = last = today
    if first > last:
        first, last = last, first
    if (last - first).days > 3660:
        first = last - dt.timedelta(days=3660)
    if view == "months":
        first = first.replace(day=1)
    return first, last


def _ledger(
    view: str, first: dt.date, last: dt.date
) -> tuple[list[str], list[list[Any]], int, int]:
    db, config = state().db, cfg()
    if view == "cash":
        rows = ledger.cash_count(db, config, first, last)
        body = [
            [
                r["day"],
                r["kasir"],
                r["count"],
                r["rupiah"],
                r["void_count"],
                r["void_rupiah"],
                r["net"],
            ]
            for r in rows
        ]
        return (
            ["day", "kasir", "sold", "rupiah", "withdrawn", "withdrawn_rupiah", "cash_rupiah"],
            body,
            sum(r["count"] for r in rows),
            sum(r["net"] for r in rows),
        )
    sales = ledger.sales(db, config, first, last)
    group = {
        "today": ledger.by_package,
        "days": ledger.by_day,
        "months": ledger.by_month,
        "packages": ledger.by_package,
        "kasir": ledger.by_kasir,
    }[view]
    name = {
        "today": "package",
        "days": "day",
        "months": "month",
        "packages": "package",
        "kasir": "kasir",
    }[view]
    rows = group(sales)
    return (
        [name, "count", "rupiah"],
        [[r["key"], r["count"], r["rupiah"]] for r in rows],
        len(sales),
        sum(s.price for s in sales),
    )


@bp.get("/sales")
@admin_only
def sales() -> Any:
    view = request.args.get("view", "today")
    if view not in VIEWS:
        view = "today"
    first, last = _range(view)
    header, rows, count, rupiah = _ledger(view, first, last)
    charts = {}
    if view in ("days", "today"):
        c_first = min(first, today_local() - dt.timedelta(days=29))
        c_last = today_local() if view == "today" else last
        if (c_last - c_first).days > 92:
            c_first = c_last - dt.timedelta(days=92)
        per_day = {
            r["key"]: r for r in ledger.by_day(ledger.sales(state().db, cfg(), c_first, c_last))
        }
        usage = usage_by_day(state().db, cfg(), c_first, c_last)
        pts_sales, pts_users = [], []
        for u in usage:
            d = u["day"]
            s = per_day.get(d, {"rupiah": 0, "count": 0})
            label = f"{d.day}/{d.month}"
            pts_sales.append(
                (label, s["rupiah"], f"{d.isoformat()}: {fmt.rupiah(s['rupiah'])} ({s['count']})")
            )
            pts_users.append((label, u["devices"], f"{d.isoformat()}: {u['devices']}"))
        charts = {
            "sales": svg.bars(pts_sales, title=gettext("Sales per day"), unit_label="Rp"),
            "users": svg.bars(
                pts_users, title=gettext("Devices per day"), unit_label=gettext("devices")
            ),
        }
    elif view == "months":
        pts = [(str(r[0])[2:], r[2], f"{r[0]}: {fmt.rupiah(r[2])} ({r[1]})") for r in rows]
        charts = {"sales": svg.bars(pts, title=gettext("Sales per month"), unit_label="Rp")}
    return page(
        "sales.html",
        view=view,
        first=first,
        last=last,
        header=header,
        rows=rows,
        count=count,
        rupiah=rupiah,
        charts=charts,
        sold_at=cfg().operator.sold_at,
    )


@bp.get("/sales.csv")
@admin_only
def sales_csv() -> Any:
    view = request.args.get("view", "all")
    if view == "all":
        first = parse_day(request.args.get("from"), dt.date(2000, 1, 1))
        last = parse_day(request.args.get("to"), today_local())
        sold = ledger.sales(state().db, cfg(), first, last)
        return csv_response(
            "sales.csv",
            [
                "voucher_id",
                "batch",
                "serial",
                "package",
                "price_rupiah",
                "sold_at_utc",
                "day",
                "kasir",
            ],
            [
                (
                    s.voucher_id,
                    s.batch_id,
                    s.serial,
                    s.package,
                    s.price,
                    s.at,
                    s.day,
                    s.kasir or "(not recorded)",
                )
                for s in sold
            ],
        )
    if view not in VIEWS:
        view = "days"
    first, last = _range(view)
    header, rows, _, _ = _ledger(view, first, last)
    return csv_response(
        f"sales-{view}-{first}-{last}.csv",
        header,
        [
            [
                (
                    "(not recorded)"
                    if (c == "" and i == 1 and view == "cash")
                    or (c == "" and i == 0 and view == "kasir")
                    else c
                )
                for i, c in enumerate(r)
            ]
            for r in rows
        ],
    )
