"""Packages (*Paket*, admins): the list, a new one, changing one made in the console."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_babel import gettext

from hotspot.errors import NotFound
from hotspot.vouchers.packages import (
    PACKAGE_NAME,
    PackageError,
    all_packages,
    get_package,
    save_package,
)
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import form_data, text_field, whole
from portal.operator.pages import page
from portal.state import state


def _tiers() -> list[str]:
    return list(cfg().tiers)


@bp.get("/packages")
@admin_only
def packages() -> Any:
    return page("packages.html", packages=all_packages(state().db))


def _package_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    name = (form.get("name") or "").strip().lower()
    import re

    if not re.match(PACKAGE_NAME, name):
        errors["name"] = gettext("Use 1 to 32 small letters, digits, - or _ (for example: harian).")
    values["name"] = name
    title = text_field(form, "title", 100)
    if not title:
        errors["title"] = gettext("Please fill this in.")
    elif len(title) > 40:
        errors["title"] = gettext("At most 40 characters.")
    values["title"] = title
    values["price"] = whole(form, "price", 0, 100_000_000, errors)
    tier = form.get("tier")
    if tier not in _tiers():
        errors["tier"] = gettext("Choose a speed.")
    values["tier"] = tier
    if form.get("kind") == "online":
        # Online time within a validity window (hotspot/vouchers/packages.py).
        values["online_minutes"] = whole(form, "online_minutes", 1, 527_040, errors)
        values["valid_days"] = days = whole(form, "valid_days", 1, 366, errors)
        values["hours"] = days * 24 if days is not None else None
    else:
        unit = form.get("unit", "hours")
        if unit not in ("hours", "days"):
            unit = "hours"
        n = whole(form, "duration", 1, 8784 if unit == "hours" else 366, errors)
        values["hours"] = n * (24 if unit == "days" else 1) if n is not None else None
    values["data_mb"] = whole(form, "data_mb", 0, 10_000_000, errors, required=False) or 0
    values["devices"] = whole(form, "devices", 1, 16, errors)
    values["shelf_days"] = whole(form, "shelf_days", 0, 3650, errors, required=False) or 0
    values["active"] = form.get("active") == "1"
    values["auto_resume"] = form.get("auto_resume") == "1"
    return values, errors


def _package_page(status: int, pkg: Any, form: dict[str, str], errors: dict[str, str]) -> Any:
    return page("package_form.html", status, pkg=pkg, form=form, errors=errors, tiers=cfg().tiers)


@bp.route("/packages/new", methods=["GET", "POST"])
@admin_only
def package_new() -> Any:
    if request.method == "GET":
        return _package_page(
            200,
            None,
            {
                "devices": "1",
                "kind": "hours",
                "unit": "hours",
                "active": "1",
                "auto_resume": "1",
                "tier": "premium" if "premium" in cfg().tiers else "",
            },
            {},
        )
    return _package_save(None)


def _package_save(pid: int | None) -> Any:
    form = form_data()
    pkg = get_package(state().db, pid) if pid is not None else None
    values, errors = _package_form(form)
    if not errors:
        try:
            save_package(
                state().db,
                values,
                tiers=_tiers(),
                actor=actor(),
                package_id=pid,
                clock=state().clock,
            )
        except PackageError as exc:
            errors[exc.field if exc.field in form or exc.field == "name" else "name"] = (
                gettext("A package with this name exists already.")
                if "exists" in exc.message
                else exc.message
            )
    if errors:
        return _package_page(422, pkg, form, errors)
    state().invalidate_packages()
    return flash_to("operator.packages", "package")


@bp.route("/packages/<int:pid>", methods=["GET", "POST"])
@admin_only
def package_edit(pid: int) -> Any:
    try:
        pkg = get_package(state().db, pid)
    except NotFound:
        return render_error("not-found", 404)
    if request.method == "POST":
        if pkg.source == "config":
            return _package_page(
                409,
                pkg,
                form_data(),
                {
                    "name": gettext(
                        "This package comes from the configuration file; change it there."
                    )
                },
            )
        return _package_save(pid)
    days = pkg.hours % 24 == 0
    online = bool(pkg.online_minutes)
    form = {
        "kind": "online" if online else "hours",
        "online_minutes": str(pkg.online_minutes or ""),
        "valid_days": str(pkg.valid_days or ""),
        "name": pkg.name,
        "title": pkg.title,
        "price": str(pkg.price),
        "tier": pkg.tier,
        "duration": str(pkg.hours // 24 if days else pkg.hours),
        "unit": "days" if days else "hours",
        "data_mb": str(pkg.data_mb or ""),
        "devices": str(pkg.devices),
        "shelf_days": str(pkg.shelf_days or ""),
        "active": "1" if pkg.active else "",
        "auto_resume": "1" if pkg.auto_resume else "",
    }
    return _package_page(200, pkg, form, {})
