"""Live sessions (*Online sekarang*): who is online, with names, makers and speeds; kick,
extend, block, unblock through the gateway, each audited."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from flask import g, request
from flask_babel import gettext

from hotspot import audit
from hotspot.errors import ControlUnavailable, HotspotError, UsageError
from hotspot.mac import normalize_mac
from hotspot.speed_schedule import window_at
from hotspot.timeutil import parse_utc
from hotspot.vouchers.lookup import package_names
from portal import fmt
from portal.operator import devices
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import int_or, text_field
from portal.operator.pages import DONE, gateway_call, page
from portal.state import state

log = logging.getLogger(__name__)

LEASES: dict[str, devices.Leases] = {}
RATES = devices.Rates()


def _leases() -> devices.Leases:
    path = cfg().operator.leases_file
    if path not in LEASES:
        LEASES[path] = devices.Leases(path)
    return LEASES[path]


@bp.get("/sessions")
def sessions() -> Any:
    try:
        rows = gateway_call("list")
        blocked = gateway_call("blocked") if g.op.role == "admin" else []
    except ControlUnavailable:
        return page(
            "sessions.html",
            503,
            rows=[],
            blocked=[],
            gw_down=True,
            **_speed_schedules(state().clock()),
        )
    rates = RATES.update(rows)
    names = _leases().names()
    voucher_ids = {r["voucher_id"] for r in rows if r.get("voucher_id")}
    packages = package_names(state().db, voucher_ids)
    now = state().clock()
    out = []
    for r in rows:
        v = devices.vendor(r["mac"])
        started = parse_utc(r["started_at"]) if r.get("started_at") else None
        out.append(
            dict(
                r,
                hostname=names.get(r["mac"]),
                vendor=v,
                private=v == devices.PRIVATE,
                rate=rates.get(r["id"]),
                package=packages.get(r.get("voucher_id")),
                used_seconds=int((now - started).total_seconds()) if started else None,
                speed_note=fmt.speed_window(r, cfg().village.tz, now),
            )
        )
    return page("sessions.html", rows=out, blocked=blocked, gw_down=False, **_speed_schedules(now))


def _speed_schedules(now: dt.datetime) -> dict[str, Any]:
    """The tiers' speed schedules (read-only: they are set in the configuration file), with
    the window in force now marked."""
    tz = cfg().village.tz
    tiers = [t for t in cfg().tiers.values() if t.schedule]
    return {
        "schedules": tiers,
        "windows_on": {t.name: window_at(t, now, tz) for t in tiers},
        "tz": tz,
        "now": now,
    }


def _mac_from_form() -> str | None:
    try:
        return normalize_mac(request.form.get("mac") or "")
    except UsageError:
        return None


def _session_action(
    name: str,
    call: Callable[[str], Any],
    done: str,
    before: Callable[[str], dict[str, Any] | None] = lambda m: None,
    after: dict[str, Any] | None = None,
) -> Any:
    mac = _mac_from_form()
    if mac is None:
        return render_error("bad-request", 400)
    try:
        call(mac)
    except ControlUnavailable:
        return render_error("gateway", 503)
    except HotspotError as exc:
        log.info("%s %s: %s", name, mac, exc.message)
        return flash_to("operator.sessions", "gone")
    with audit.write(state().db) as conn:
        audit.record(
            conn,
            actor(),
            name,
            f"device:{mac}",
            before=before(mac),
            after=after,
            at=state().clock(),
        )
    return flash_to("operator.sessions", done)


@bp.post("/sessions/kick")
def session_kick() -> Any:
    return _session_action(
        "session.kick",
        lambda mac: gateway_call("deauthorize", mac=mac, reason="admin-kick"),
        "kicked",
        after={"ended": "admin-kick"},
    )


@bp.post("/sessions/extend")
@admin_only
def session_extend() -> Any:
    minutes = int_or(request.form.get("minutes"), 0)
    if not 1 <= minutes <= 10080:
        return render_error("bad-request", 400)
    return _session_action(
        "session.extend",
        lambda mac: gateway_call("extend", mac=mac, minutes=minutes),
        "extended",
        after={"minutes": minutes},
    )


@bp.post("/sessions/block")
@admin_only
def session_block() -> Any:
    reason = text_field(request.form, "reason", 200)
    return _session_action(
        "device.block",
        lambda mac: gateway_call("block", mac=mac, reason=reason),
        "blocked",
        before=lambda m: {"blocked": False},
        after={"blocked": True, "reason": reason or None},
    )


@bp.post("/sessions/unblock")
@admin_only
def session_unblock() -> Any:
    return _session_action(
        "device.unblock",
        lambda mac: gateway_call("unblock", mac=mac),
        "unblocked",
        before=lambda m: {"blocked": True},
        after={"blocked": False},
    )


DONE["gone"] = lambda a: gettext("That device had no session any more; nothing was changed.")
