"""The overview (*Ringkasan*, the kasir's home screen): the quick-sale buttons, devices online,
today's users, traffic and sales, the gateway's health."""

from __future__ import annotations

import secrets
from typing import Any

from flask import g, redirect, request, url_for
from flask_babel import gettext

from hotspot import health
from hotspot.errors import ErrorCode, HotspotError
from hotspot.usage import usage_by_day
from hotspot.vouchers import ledger
from hotspot.vouchers.packages import list_packages
from hotspot.vouchers.sales import SaleError, quick_sell, stock_by_package
from portal.operator.blueprint import actor, bp, cfg, render_error
from portal.operator.forms import int_or
from portal.operator.pages import gateway_call, page, today_local, voucher_key
from portal.state import state


@bp.get("/")
def dashboard() -> Any:
    return dashboard_page()


def dashboard_page(status: int = 200, **extra: Any) -> Any:
    """The overview (the kasir's home screen, with the quick-sale buttons)."""
    from hotspot.certs import status as cert_status  # cryptography: not at start-up

    db, config = state().db, cfg()
    gw_status: dict[str, Any]
    gw_ok, sessions, gw_status = True, [], {}
    try:
        sessions = gateway_call("list")
        gw_status = gateway_call("status") or {}
    except HotspotError:
        gw_ok = False
    today = today_local()
    usage = usage_by_day(db, config, today, today)[0]
    live_macs = {s["mac"] for s in sessions}
    today_sales = ledger.sales(db, config, today, today)
    mine = [s for s in today_sales if s.kasir == g.op.name]
    return page(
        "dashboard.html",
        status,
        **quick_sale_buttons(),
        **extra,
        online=len(sessions),
        gw_ok=gw_ok,
        gw_status=gw_status,
        users_today=max(usage["devices"], len(live_macs)),
        traffic_today=usage["bytes"],
        sales_count=len(today_sales),
        sales_rupiah=sum(s.price for s in today_sales),
        mine_count=len(mine),
        mine_rupiah=sum(s.price for s in mine),
        health=health.snapshot(config, db),
        certificate=cert_status(config),
    )


def quick_sale_buttons() -> dict[str, Any]:
    """The home screen's quick-sale buttons: each active package with its stock, and the
    form's one-time token (a second submit of the same form sells nothing more)."""
    stock = stock_by_package(state().db, clock=state().clock)
    return {
        "quick": [
            {
                "id": p.id,
                "title": p.title,
                "price": p.price,
                "stock": stock.get(p.id, 0),
                "token": secrets.token_urlsafe(24),
            }
            for p in list_packages(state().db)
        ],
    }


@bp.post("/quick-sale")
def quick_sale() -> Any:
    package_id = int_or(request.form.get("package"), -1)
    token = (request.form.get("token") or "").strip()
    if not token or package_id < 0:
        return render_error("bad-request", 400)
    if voucher_key() is None:
        return render_error("no-key", 503)
    try:
        sale = quick_sell(state().db, package_id, token, actor=actor(), clock=state().clock)
    except SaleError as exc:
        if exc.code is ErrorCode.OUT_OF_STOCK:
            msg = gettext(
                "No voucher of this package is left to sell. Ask the admin to make a new batch."
            )
        else:
            msg = gettext("This sale could not be made. Nothing was sold.")
        return dashboard_page(409, quick_error=msg)
    return redirect(url_for("operator.receipt", vid=sale["voucher_id"], print=1), code=303)
