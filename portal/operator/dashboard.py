"""The overview (*Ringkasan*): devices online, today's users, traffic and sales, the gateway's
health."""

from __future__ import annotations

from typing import Any

from flask import g

from hotspot import health
from hotspot.errors import HotspotError
from hotspot.usage import usage_by_day
from hotspot.vouchers import ledger
from portal.operator.blueprint import bp, cfg
from portal.operator.pages import gateway_call, page, today_local
from portal.state import state


@bp.get("/")
def dashboard() -> Any:
    return dashboard_page()


def dashboard_page(status: int = 200, **extra: Any) -> Any:
    """The overview (the kasir's home screen, with the quick-sale buttons)."""
    from portal.operator.receipts import quick_sale_buttons

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
    )
