"""Trusted devices (*Perangkat tepercaya*, issue #13 item 5): the admin's list of devices
that never see the portal — the kantor desa PC, the puskesmas, a CCTV recorder. The list
lives in the gateway (the ``trust``, ``untrust`` and ``trusted`` requests); adding and
removing are audited. Admin only: a kasir gets the 403 page."""

from __future__ import annotations

import logging
from typing import Any

from flask import request
from flask_babel import gettext

from hotspot import audit
from hotspot.errors import ControlUnavailable, ErrorCode, HotspotError, UsageError
from hotspot.mac import normalize_mac
from hotspot.protocol import MAX_LABEL
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import form_data, text_field
from portal.operator.pages import DONE, gateway_call, page
from portal.state import state

log = logging.getLogger(__name__)

UNLIMITED = "unlimited"  # gateway/engine.py: UNLIMITED_TIER (the portal does not import it)


def _tiers() -> list[str]:
    names = list(cfg().tiers)
    return names if UNLIMITED in names else [*names, UNLIMITED]


def _page(status: int = 200, **ctx: Any) -> Any:
    try:
        rows = gateway_call("trusted")
    except ControlUnavailable:
        return page("trusted.html", 503, rows=[], tiers=_tiers(), gw_down=True, **ctx)
    return page("trusted.html", status, rows=rows, tiers=_tiers(), gw_down=False, **ctx)


@bp.get("/trusted")
@admin_only
def trusted() -> Any:
    return _page()


@bp.post("/trusted")
@admin_only
def trusted_add() -> Any:
    form = form_data()
    errors: dict[str, str] = {}
    try:
        mac = normalize_mac(form.get("mac", ""))
    except UsageError:
        mac = ""
        errors["mac"] = gettext("Not a device address. Example: 3c:5a:b4:12:34:56.")
    label = text_field(form, "label", MAX_LABEL + 1)
    if not label:
        errors["label"] = gettext("Give the device a name, for example: PC kantor desa.")
    elif len(label) > MAX_LABEL:
        errors["label"] = gettext("At most %(num)d characters.", num=MAX_LABEL)
    tier = form.get("tier", "")
    if tier not in _tiers():
        errors["tier"] = gettext("Choose a speed from the list.")
    if errors:
        return _page(422, form=form, errors=errors)
    try:
        gateway_call("trust", mac=mac, label=label, tier=tier, created_by=actor().name)
    except ControlUnavailable:
        return render_error("gateway", 503)
    except HotspotError as exc:
        log.info("trust %s refused: %s", mac, exc.message)
        if exc.code is ErrorCode.BLOCKED:
            errors["mac"] = gettext(
                "This device is blocked. Unblock it first (Online now) if it is to be trusted."
            )
            return _page(409, form=form, errors=errors)
        errors["tier"] = gettext("The gateway refused this: %(why)s", why=exc.message)
        return _page(422, form=form, errors=errors)
    with audit.write(state().db) as conn:
        audit.record(
            conn,
            actor(),
            "device.trust",
            f"device:{mac}",
            before=None,
            after={"label": label, "tier": tier},
            at=state().clock(),
        )
    return flash_to("operator.trusted", "trusted")


@bp.post("/trusted/remove")
@admin_only
def trusted_remove() -> Any:
    try:
        mac = normalize_mac(request.form.get("mac") or "")
    except UsageError:
        return render_error("bad-request", 400)
    try:
        gateway_call("untrust", mac=mac)
    except ControlUnavailable:
        return render_error("gateway", 503)
    except HotspotError as exc:
        log.info("untrust %s: %s", mac, exc.message)
        return flash_to("operator.trusted", "not-on-list")
    with audit.write(state().db) as conn:
        audit.record(
            conn,
            actor(),
            "device.untrust",
            f"device:{mac}",
            before={"trusted": True},
            after={"trusted": False},
            at=state().clock(),
        )
    return flash_to("operator.trusted", "untrusted")


DONE["trusted"] = lambda a: gettext("The device is trusted: it goes online without the portal.")
DONE["untrusted"] = lambda a: gettext(
    "The device was removed from the list; it sees the portal again."
)
DONE["not-on-list"] = lambda a: gettext("That device was not on the list; nothing was changed.")
