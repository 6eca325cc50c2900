"""The overview (*Ringkasan*): devices online, today's users, traffic and sales, the gateway's
health."""

from __future__ import annotations

import logging
from typing import Any

from flask import g

from hotspot.errors import HotspotError
from hotspot.usage import usage_by_day
from hotspot.vouchers import ledger
from hotspot.vouchers.withdrawal import expire_unsold
from portal.operator.blueprint import bp, cfg, state
from portal.operator.pages import gateway_call, page, today_local

log = logging.getLogger(__name__)


def _health() -> dict[str, Any]:
    import os
    import time

    out: dict[str, Any] = {}
    try:
        import psutil

        from sync.health import temperature

        out["cpu"] = psutil.cpu_percent(interval=None)
        out["mem"] = psutil.virtual_memory().percent
        from hotspot.config import database_path

        path = database_path(cfg().database.url)
        disk_at = str(path.parent) if path is not None and path.parent.exists() else "/"
        out["disk"] = psutil.disk_usage(disk_at).percent
        out["temp"] = temperature()
        out["uptime"] = max(0, int(time.time() - psutil.boot_time()))
    except Exception:  # noqa: BLE001 - health is a nicety; the page must still show
        log.debug("health unavailable", exc_info=True)
    try:
        with open(f"/sys/class/net/{cfg().network.wan_interface}/operstate") as fh:
            out["wan"] = fh.read().strip()
    except OSError:
        out["wan"] = None
    out["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out["uplink_ok"] = _last_uplink()
    return out


def _last_uplink() -> bool | None:
    """What the sync agent's latest health sample said about the uplink (None: unknown)."""
    import json

    from sqlalchemy import select

    from hotspot.model_sync import SyncOutbox

    try:
        with state().db.connect() as conn:
            payload = conn.execute(select(SyncOutbox.payload).where(SyncOutbox.kind == "health")
                                   .order_by(SyncOutbox.id.desc()).limit(1)).scalar()
        return json.loads(payload).get("uplink_ok") if payload else None
    except Exception:  # noqa: BLE001
        return None


@bp.get("/")
def dashboard() -> Any:
    db, config = state().db, cfg()
    expired = expire_unsold(db, clock=state().clock)
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
    return page("dashboard.html", online=len(sessions), gw_ok=gw_ok, gw_status=gw_status,
                users_today=max(usage["devices"], len(live_macs)),
                traffic_today=usage["bytes"],
                sales_count=len(today_sales), sales_rupiah=sum(s.price for s in today_sales),
                mine_count=len(mine), mine_rupiah=sum(s.price for s in mine),
                health=_health(), expired=expired)
