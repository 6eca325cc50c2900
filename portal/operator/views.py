"""The console's pages. Forms post to the page they are on; a bad field gets its message
next to it and the page comes back with everything typed still in it (a 400/409/422), a
done action is a 303 to a page that says so."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from flask import Response, g, make_response, render_template, request, url_for
from flask_babel import gettext, ngettext

from hotspot import audit, operators
from hotspot.errors import ControlUnavailable, HotspotError, NotFound, UsageError
from hotspot.model import normalize_mac
from hotspot.usage import usage_by_day
from hotspot.village_days import local_day
from hotspot.vouchers import ledger
from hotspot.vouchers.batches import (batch_codes, batch_info, batch_vouchers,
                                      create_batch_audited, list_batches)
from hotspot.vouchers.lookup import find_voucher, voucher_detail
from hotspot.vouchers.packages import (PACKAGE_NAME, PackageError, all_packages, get_package,
                                       get_package_title, save_package)
from hotspot.vouchers.sales import SaleError, cancel_sale, mark_batch_sold, mark_sold
from hotspot.vouchers.withdrawal import expire_unsold, void_batch, void_one
from portal import fmt
from portal.operator import (COOKIE, actor, admin_only, bp, cfg, flash_to, render_error,
                             see_other, state)
from portal.operator import devices, svg

log = logging.getLogger(__name__)

LEASES: dict[str, devices.Leases] = {}
RATES = devices.Rates()


# -- small helpers -----------------------------------------------------------------------------

def page(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    ctx.setdefault("errors", {})
    ctx.setdefault("form", {})
    return render_template(f"operator/{template}", done=done_text(), **ctx), status


DONE: dict[str, Callable[[dict[str, str]], str]] = {
    "sold": lambda a: _sold_text(_int(a.get("id"), -1)),
    "sold-range": lambda a: ngettext("%(num)d voucher marked sold.",
                                     "%(num)d vouchers marked sold.", _int(a.get("n"))),
    "unsold": lambda a: gettext("The sale was undone."),
    "void": lambda a: gettext("The voucher was withdrawn."),
    "void-batch": lambda a: ngettext("%(num)d voucher withdrawn.", "%(num)d vouchers withdrawn.",
                                     _int(a.get("n"))),
    "package": lambda a: gettext("The package was saved."),
    "batch": lambda a: gettext("The batch was made. Print its sheet now."),
    "kicked": lambda a: gettext("The device was disconnected."),
    "extended": lambda a: gettext("The session was extended."),
    "blocked": lambda a: gettext("The device was blocked."),
    "unblocked": lambda a: gettext("The device was unblocked."),
    "operator": lambda a: gettext("The account was saved."),
    "password": lambda a: gettext("Your password was changed."),
    "expired": lambda a: ngettext("%(num)d unsold voucher past its shelf life was withdrawn.",
                                  "%(num)d unsold vouchers past their shelf life were withdrawn.",
                                  _int(a.get("n"))),
}


def _sold_text(vid: int) -> str:
    """What the kasir is to take, read from the database (never from the link itself)."""
    try:
        v = voucher_detail(state().db, vid)
    except NotFound:
        return ""
    if v["sold_at"] is None:
        return ""
    title = get_package_title(state().db, v["batch_id"]) or v["package_name"]
    return gettext("Sold: %(package)s, %(price)s. Take the cash.", package=title,
                   price=fmt.rupiah(v["price"]))


def done_text() -> str:
    make = DONE.get(request.args.get("done", ""))
    return make(request.args) if make else ""


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def whole(form: dict[str, str], name: str, lo: int, hi: int, errors: dict[str, str],
          required: bool = True) -> int | None:
    raw = (form.get(name) or "").strip().replace(".", "").replace(",", "").replace(" ", "")
    if not raw:
        if required:
            errors[name] = gettext("Please fill this in.")
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = gettext("Enter a whole number, like %(example)s.", example=lo if lo > 0 else 5000)
        return None
    if value < lo:
        errors[name] = gettext("It cannot be less than %(lo)s.", lo=lo) if lo > 0 else \
            gettext("It cannot be negative.")
        return None
    if value > hi:
        limit = format(hi, ",").replace(",", ".")
        errors[name] = gettext("It cannot be more than %(hi)s.", hi=limit)
        return None
    return value


def text_field(form: dict[str, str], name: str, max_len: int) -> str:
    return " ".join((form.get(name) or "").split())[:max_len]


def form_data() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}


def voucher_key() -> bytes | None:
    svc = state().vouchers
    return svc.key if svc is not None else None


def gateway_call(op: str, **args: Any) -> Any:
    return state().gateway.call(op, **args)


def safe_next(value: str | None) -> str:
    """Only our own console paths: never an open redirect."""
    if value and value.startswith("/operator") and not value.startswith("//") \
            and not urlsplit(value).netloc and "\\" not in value:
        return value
    return url_for("operator.dashboard")


def csv_response(name: str, header: list[str], rows: Iterable[Iterable[Any]]) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for row in rows:
        w.writerow(["" if v is None else _csv_safe(v) for v in row])
    resp = make_response(buf.getvalue())
    resp.headers["Content-Type"] = "text/csv; charset=utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


def _csv_safe(v: Any) -> Any:
    """No spreadsheet formulas from names or notes (CSV injection)."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    if isinstance(v, dt.datetime):
        return v.replace(microsecond=0).isoformat() + "Z"
    return v


def today_local() -> dt.date:
    return local_day(state().clock(), cfg().village.tz)


def parse_day(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


# -- login -------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if g.op is not None and request.method == "GET":
        return see_other("operator.dashboard")
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        return page("login.html", nxt=nxt)
    name = (request.form.get("name") or "").strip().lower()[:64]
    password = request.form.get("password") or ""
    config = cfg()
    try:
        op = operators.authenticate(state().db, name, password, request.remote_addr or "",
                                    brake=operators.Brake.from_config(config),
                                    clock=state().clock)
    except operators.LoginRefused as exc:
        if exc.code == "locked":
            minutes = max(1, (exc.retry_after + 59) // 60)
            msg = ngettext("Too many wrong attempts. Please wait %(num)d minute.",
                           "Too many wrong attempts. Please wait %(num)d minutes.", minutes)
            body, _ = page("login.html", nxt=nxt, error=msg, name=name)
            return body, 429, {"Retry-After": str(exc.retry_after)}
        return page("login.html", 401, nxt=nxt, name=name,
                    error=gettext("Wrong name or password."))
    token = operators.open_session(state().db, op, request.remote_addr or "",
                                   config.operator.session_hours, clock=state().clock)
    resp = make_response(see_other_url(nxt))
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure,
                    path="/operator")
    return resp


def see_other_url(url: str) -> Response:
    from flask import redirect

    return redirect(url, code=303)


@bp.post("/logout")
def logout() -> Any:
    operators.close_session(state().db, request.cookies.get(COOKIE))
    resp = make_response(see_other("operator.login"))
    resp.delete_cookie(COOKIE, path="/operator", httponly=True, samesite="Strict",
                       secure=request.is_secure)
    return resp


# -- dashboard ---------------------------------------------------------------------------------

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


# -- selling and looking vouchers up -------------------------------------------------------------

VOUCHER_ERRORS = {
    "voucher-unknown": lambda: gettext("No voucher has this code. Check it and try again."),
    "voucher-sold": lambda: gettext("This voucher was sold already."),
    "voucher-void": lambda: gettext("This voucher was withdrawn; it cannot be sold."),
    "voucher-used": lambda: gettext("A used voucher's sale cannot be undone."),
    "voucher-unsold": lambda: gettext("This voucher was not marked sold."),
}


def _find(code: str) -> int | None:
    key = voucher_key()
    if key is None:
        raise HotspotError("no voucher key", code="no-key")
    return find_voucher(state().db, key, code)


@bp.route("/sell", methods=["GET", "POST"])
def sell() -> Any:
    db = state().db
    today = today_local()
    mine = [s for s in ledger.sales(db, cfg(), today, today) if s.kasir == g.op.name]
    ctx = {"mine_count": len(mine), "mine_rupiah": sum(s.price for s in mine),
           "first_use": cfg().operator.sold_at == "first-use"}
    if request.method == "GET":
        return page("sell.html", **ctx)
    code = (request.form.get("code") or "")[:40]
    if voucher_key() is None:
        return render_error("no-key", 503)
    vid = _find(code)
    if vid is None:
        return page("sell.html", 404, code=code, error=VOUCHER_ERRORS["voucher-unknown"](), **ctx)
    try:
        sale = mark_sold(db, vid, actor=actor(), clock=state().clock)
    except SaleError as exc:
        detail = voucher_detail(db, vid)
        msg = VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS["voucher-unknown"])()
        if exc.code == "voucher-sold":
            msg = gettext("This voucher was sold already, by %(who)s on %(when)s.",
                          who=detail["sold_by"] or gettext("(not recorded)"),
                          when=_local(detail["sold_at"]))
        return page("sell.html", 409, code=code, error=msg, **ctx)
    return flash_to("operator.sell", "sold", id=sale["voucher_id"])


def _local(ts: Any) -> str:
    from portal.operator import local

    return local(ts)


@bp.get("/voucher")
def voucher_lookup() -> Any:
    code = (request.args.get("code") or "")[:40]
    vid_arg = request.args.get("id")
    if not code and not vid_arg:
        return page("voucher.html", v=None, code="")
    if vid_arg:
        vid = _int(vid_arg, -1)
    else:
        if voucher_key() is None:
            return render_error("no-key", 503)
        vid = _find(code)
    try:
        v = voucher_detail(state().db, vid) if vid is not None else None
    except NotFound:
        v = None
    if v is None:
        return page("voucher.html", 404, v=None, code=code,
                    error=VOUCHER_ERRORS["voucher-unknown"]())
    return page("voucher.html", v=v, code=code, now=state().clock())


@bp.post("/voucher/<int:vid>/void")
@admin_only
def voucher_void(vid: int) -> Any:
    reason = text_field(request.form, "reason", 200)
    if not reason:
        v = _detail_or_404(vid)
        return page("voucher.html", 422, v=v, code="", now=state().clock(),
                    errors={"reason": gettext("Please say why.")})
    try:
        out = void_one(state().db, vid, actor=actor(), reason=reason, clock=state().clock)
    except SaleError as exc:
        return page("voucher.html", 409, v=_detail_or_404(vid), code="", now=state().clock(),
                    error=VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS["voucher-void"])())
    _kick(out["devices"])
    return flash_to("operator.voucher_lookup", "void", id=vid)


@bp.post("/voucher/<int:vid>/unsell")
@admin_only
def voucher_unsell(vid: int) -> Any:
    try:
        cancel_sale(state().db, vid, actor=actor(),
                    reason=text_field(request.form, "reason", 200), clock=state().clock)
    except SaleError as exc:
        return page("voucher.html", 409, v=_detail_or_404(vid), code="", now=state().clock(),
                    error=VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS["voucher-used"])())
    return flash_to("operator.voucher_lookup", "unsold", id=vid)


@bp.post("/voucher/<int:vid>/sell")
def voucher_sell(vid: int) -> Any:
    try:
        mark_sold(state().db, vid, actor=actor(), clock=state().clock)
    except SaleError as exc:
        return page("voucher.html", 409, v=_detail_or_404(vid), code="", now=state().clock(),
                    error=VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS["voucher-sold"])())
    return flash_to("operator.voucher_lookup", "sold", id=vid)


def _detail_or_404(vid: int) -> dict[str, Any]:
    try:
        return voucher_detail(state().db, vid)
    except NotFound:
        from werkzeug.exceptions import NotFound as HTTPNotFound

        raise HTTPNotFound() from None


def _kick(macs: Iterable[str]) -> None:
    for mac in macs:
        try:
            gateway_call("deauthorize", mac=mac, reason="admin-kick")
        except HotspotError:
            pass


# -- packages ------------------------------------------------------------------------------------

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
        errors["name"] = gettext("Use 1 to 32 small letters, digits, - or _ (for example: "
                                 "harian).")
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
    unit = form.get("unit", "hours")
    if unit not in ("hours", "days"):
        unit = "hours"
    n = whole(form, "duration", 1, 8784 if unit == "hours" else 366, errors)
    values["hours"] = n * (24 if unit == "days" else 1) if n is not None else None
    values["data_mb"] = whole(form, "data_mb", 0, 10_000_000, errors, required=False) or 0
    values["devices"] = whole(form, "devices", 1, 16, errors)
    values["shelf_days"] = whole(form, "shelf_days", 0, 3650, errors, required=False) or 0
    values["active"] = form.get("active") == "1"
    return values, errors


def _package_page(status: int, pkg: Any, form: dict[str, str], errors: dict[str, str]) -> Any:
    return page("package_form.html", status, pkg=pkg, form=form, errors=errors, tiers=cfg().tiers)


@bp.route("/packages/new", methods=["GET", "POST"])
@admin_only
def package_new() -> Any:
    if request.method == "GET":
        return _package_page(200, None, {"devices": "1", "unit": "hours", "active": "1",
                                         "tier": "premium" if "premium" in cfg().tiers else ""}, {})
    return _package_save(None)


def _package_save(pid: int | None) -> Any:
    form = form_data()
    pkg = get_package(state().db, pid) if pid is not None else None
    values, errors = _package_form(form)
    if not errors:
        try:
            save_package(state().db, values, tiers=_tiers(), actor=actor(), package_id=pid,
                         clock=state().clock)
        except PackageError as exc:
            errors[exc.field if exc.field in form or exc.field == "name" else "name"] = \
                gettext("A package with this name exists already.") \
                if "exists" in exc.message else exc.message
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
            return _package_page(409, pkg, form_data(), {"name": gettext(
                "This package comes from the configuration file; change it there.")})
        return _package_save(pid)
    days = pkg.hours % 24 == 0
    form = {"name": pkg.name, "title": pkg.title, "price": str(pkg.price), "tier": pkg.tier,
            "duration": str(pkg.hours // 24 if days else pkg.hours),
            "unit": "days" if days else "hours", "data_mb": str(pkg.data_mb or ""),
            "devices": str(pkg.devices), "shelf_days": str(pkg.shelf_days or ""),
            "active": "1" if pkg.active else ""}
    return _package_page(200, pkg, form, {})


# -- batches and sheets ----------------------------------------------------------------------------

@bp.route("/batches", methods=["GET", "POST"])
def batches() -> Any:
    db = state().db
    expire_unsold(db, clock=state().clock)
    on_sale = [p for p in all_packages(db) if p.active]
    ctx = {"batches": list_batches(db), "packages": on_sale, "max_batch": cfg().operator.max_batch}
    if request.method == "GET":
        return page("batches.html", form={"count": "20"}, **ctx)
    if g.op.role != "admin":
        return render_error("admin-only", 403)
    form = form_data()
    errors: dict[str, str] = {}
    pid = _int(form.get("package"), -1)
    if pid not in {p.id for p in on_sale}:
        errors["package"] = gettext("Choose a package.")
    raw = (form.get("count") or "").strip()
    count = _int(raw, -1) if raw.lstrip("-").isdigit() else None
    cap = cfg().operator.max_batch
    if count is None or count < 1:
        errors["count"] = gettext("Enter how many vouchers to make, from 1 to %(max)d.", max=cap)
    elif count > cap:
        errors["count"] = gettext("At most %(max)d vouchers in one batch. Make several "
                                  "batches if you need more.", max=cap)
    key = voucher_key()
    if key is None:
        return render_error("no-key", 503)
    if errors:
        return page("batches.html", 422, form=form, errors=errors, **ctx)
    batch = create_batch_audited(db, key, pid, count, actor=actor(),
                                 note=text_field(form, "note", 200) or None,
                                 max_count=cap, clock=state().clock)
    return flash_to("operator.batch", "batch", bid=batch.id)


@bp.get("/batches/<int:bid>")
def batch(bid: int) -> Any:
    db = state().db
    try:
        info = batch_info(db, bid)
    except NotFound:
        return render_error("not-found", 404)
    return _batch_page(200, info)


PER_PAGE = 100


def _batch_page(status: int, info: dict[str, Any], **ctx: Any) -> Any:
    """The batch with a page of its vouchers (a batch may have 1000)."""
    rows = batch_vouchers(state().db, info["id"])
    pages = max(1, -(-len(rows) // PER_PAGE))
    n = min(max(1, _int(request.args.get("page"), 1)), pages)
    return page("batch.html", status, b=info, vouchers=rows[(n - 1) * PER_PAGE:n * PER_PAGE],
                page_no=n, pages=pages, **ctx)


@bp.post("/batches/<int:bid>/sell")
def batch_sell(bid: int) -> Any:
    db = state().db
    try:
        info = batch_info(db, bid)
    except NotFound:
        return render_error("not-found", 404)
    form = form_data()
    errors: dict[str, str] = {}
    first = whole(form, "first", 1, info["count"], errors)
    last = whole(form, "last", 1, info["count"], errors)
    if errors:
        return _batch_page(422, info, form=form, errors=errors)
    n, _skipped = mark_batch_sold(db, bid, first, last, actor=actor(), clock=state().clock)
    return flash_to("operator.batch", "sold-range", bid=bid, n=n)


@bp.post("/batches/<int:bid>/void")
@admin_only
def batch_void(bid: int) -> Any:
    db = state().db
    form = form_data()
    reason = text_field(form, "reason", 200)
    try:
        info = batch_info(db, bid)
    except NotFound:
        return render_error("not-found", 404)
    if not reason:
        return _batch_page(422, info, form=form, errors={"reason": gettext("Please say why.")})
    out = void_batch(db, bid, actor=actor(), reason=reason,
                     include_sold=form.get("include_sold") == "1", clock=state().clock)
    _kick(out["devices"])
    return flash_to("operator.batch", "void-batch", bid=bid, n=out["voided"])


def _sheet_codes(bid: int) -> tuple[dict[str, Any], list[tuple[int, str]]] | Any:
    key = voucher_key()
    if key is None:
        return render_error("no-key", 503)
    try:
        info = batch_info(state().db, bid)
    except NotFound:
        return render_error("not-found", 404)
    include_sold = request.args.get("sold") == "1"
    rows = batch_vouchers(state().db, bid)
    wanted = {r["serial"] for r in rows if r["state"] == "new"
              and (include_sold or r["sold_at"] is None)}
    codes = [(s, c) for s, c in batch_codes(state().db, key, bid) if s in wanted]
    return info, codes


@bp.get("/batches/<int:bid>/sheet")
def batch_sheet(bid: int) -> Any:
    got = _sheet_codes(bid)
    if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[0], dict):
        return got
    info, codes = got
    base = state().urls.captive_base
    cards = [{"serial": s, "code": c, "qr": svg.qr(f"{base}/?code={c}", c)} for s, c in codes]
    with audit.write(state().db) as conn:
        audit.record(conn, actor(), "batch.print", f"batch:{bid}",
                     after={"cards": len(cards)}, at=state().clock())
    return page("sheet.html", b=info, cards=cards, portal=base)


@bp.get("/batches/<int:bid>/codes.csv")
@admin_only
def batch_csv(bid: int) -> Any:
    got = _sheet_codes(bid)
    if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[0], dict):
        return got
    info, codes = got
    with audit.write(state().db) as conn:
        audit.record(conn, actor(), "batch.export", f"batch:{bid}",
                     after={"codes": len(codes)}, at=state().clock())
    return csv_response(f"batch-{bid}-codes.csv",
                        ["batch", "serial", "code", "package", "price_rupiah", "hours", "data_mb",
                         "devices", "valid_until"],
                        [(bid, s, c, info["package"], info["price"], info["hours"],
                          info["data_mb"], info["devices"], info["valid_until"]) for s, c in codes])


# -- sales ledger ---------------------------------------------------------------------------------

VIEWS = ("today", "days", "months", "packages", "kasir", "cash")


def _range(view: str) -> tuple[dt.date, dt.date]:
    today = today_local()
    default_first = {"today": today, "months": today.replace(day=1) - dt.timedelta(days=334)}.get(
        view, today - dt.timedelta(days=29))
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


def _ledger(view: str, first: dt.date, last: dt.date) -> tuple[list[str], list[list[Any]], int, int]:
    db, config = state().db, cfg()
    if view == "cash":
        rows = ledger.cash_count(db, config, first, last)
        body = [[r["day"], r["kasir"], r["count"], r["rupiah"], r["void_count"], r["void_rupiah"],
                 r["net"]] for r in rows]
        return (["day", "kasir", "sold", "rupiah", "withdrawn", "withdrawn_rupiah", "cash_rupiah"],
                body, sum(r["count"] for r in rows), sum(r["net"] for r in rows))
    sales = ledger.sales(db, config, first, last)
    group = {"today": ledger.by_package, "days": ledger.by_day, "months": ledger.by_month,
             "packages": ledger.by_package, "kasir": ledger.by_kasir}[view]
    name = {"today": "package", "days": "day", "months": "month", "packages": "package",
            "kasir": "kasir"}[view]
    rows = group(sales)
    return ([name, "count", "rupiah"], [[r["key"], r["count"], r["rupiah"]] for r in rows],
            len(sales), sum(s.price for s in sales))


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
        per_day = {r["key"]: r for r in ledger.by_day(ledger.sales(state().db, cfg(), c_first, c_last))}
        usage = usage_by_day(state().db, cfg(), c_first, c_last)
        pts_sales, pts_users = [], []
        for u in usage:
            d = u["day"]
            s = per_day.get(d, {"rupiah": 0, "count": 0})
            label = f"{d.day}/{d.month}"
            pts_sales.append((label, s["rupiah"], f"{d.isoformat()}: {fmt.rupiah(s['rupiah'])} "
                              f"({s['count']})"))
            pts_users.append((label, u["devices"], f"{d.isoformat()}: {u['devices']}"))
        charts = {"sales": svg.bars(pts_sales, title=gettext("Sales per day"), unit_label="Rp"),
                  "users": svg.bars(pts_users, title=gettext("Devices per day"),
                                    unit_label=gettext("devices"))}
    elif view == "months":
        pts = [(str(r[0])[2:], r[2], f"{r[0]}: {fmt.rupiah(r[2])} ({r[1]})") for r in rows]
        charts = {"sales": svg.bars(pts, title=gettext("Sales per month"), unit_label="Rp")}
    return page("sales.html", view=view, first=first, last=last, header=header, rows=rows,
                count=count, rupiah=rupiah, charts=charts, sold_at=cfg().operator.sold_at)


@bp.get("/sales.csv")
@admin_only
def sales_csv() -> Any:
    view = request.args.get("view", "all")
    if view == "all":
        first = parse_day(request.args.get("from"), dt.date(2000, 1, 1))
        last = parse_day(request.args.get("to"), today_local())
        rows = ledger.sales(state().db, cfg(), first, last)
        return csv_response("sales.csv", ["voucher_id", "batch", "serial", "package",
                                          "price_rupiah", "sold_at_utc", "day", "kasir"],
                            [(s.voucher_id, s.batch_id, s.serial, s.package, s.price, s.at,
                              s.day, s.kasir or "(not recorded)") for s in rows])
    if view not in VIEWS:
        view = "days"
    first, last = _range(view)
    header, rows, _, _ = _ledger(view, first, last)
    return csv_response(f"sales-{view}-{first}-{last}.csv", header,
                        [[("(not recorded)" if (c == "" and i == 1 and view == "cash") or
                           (c == "" and i == 0 and view == "kasir") else c)
                          for i, c in enumerate(r)] for r in rows])


# -- live sessions ------------------------------------------------------------------------------------

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
        return page("sessions.html", 503, rows=[], blocked=[], gw_down=True)
    rates = RATES.update(rows)
    names = _leases().names()
    voucher_ids = {r["voucher_id"] for r in rows if r.get("voucher_id")}
    packages = _voucher_packages(voucher_ids)
    now = state().clock()
    out = []
    for r in rows:
        v = devices.vendor(r["mac"])
        started = fmt.parse_utc(r.get("started_at"))
        out.append(dict(r, hostname=names.get(r["mac"]), vendor=v,
                        private=v == devices.PRIVATE, rate=rates.get(r["id"]),
                        package=packages.get(r.get("voucher_id")),
                        used_seconds=int((now - started.replace(tzinfo=None)).total_seconds())
                        if started else None))
    return page("sessions.html", rows=out, blocked=blocked, gw_down=False)


def _voucher_packages(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    from sqlalchemy import select

    from hotspot.model import Voucher, VoucherBatch

    with state().db.connect() as conn:
        return {vid: name for vid, name in conn.execute(
            select(Voucher.id, VoucherBatch.package_name)
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(Voucher.id.in_(list(ids))))}


def _mac_from_form() -> str | None:
    try:
        return normalize_mac(request.form.get("mac") or "")
    except UsageError:
        return None


def _session_action(name: str, call: Callable[[str], Any], done: str,
                    before: Callable[[str], dict[str, Any] | None] = lambda m: None,
                    after: dict[str, Any] | None = None) -> Any:
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
        audit.record(conn, actor(), name, f"device:{mac}", before=before(mac), after=after,
                     at=state().clock())
    return flash_to("operator.sessions", done)


@bp.post("/sessions/kick")
def session_kick() -> Any:
    return _session_action("session.kick",
                           lambda mac: gateway_call("deauthorize", mac=mac, reason="admin-kick"),
                           "kicked", after={"ended": "admin-kick"})


@bp.post("/sessions/extend")
@admin_only
def session_extend() -> Any:
    minutes = _int(request.form.get("minutes"), 0)
    if not 1 <= minutes <= 10080:
        return render_error("bad-request", 400)
    return _session_action("session.extend",
                           lambda mac: gateway_call("extend", mac=mac, minutes=minutes),
                           "extended", after={"minutes": minutes})


@bp.post("/sessions/block")
@admin_only
def session_block() -> Any:
    reason = text_field(request.form, "reason", 200)
    return _session_action("device.block",
                           lambda mac: gateway_call("block", mac=mac, reason=reason),
                           "blocked", before=lambda m: {"blocked": False},
                           after={"blocked": True, "reason": reason or None})


@bp.post("/sessions/unblock")
@admin_only
def session_unblock() -> Any:
    return _session_action("device.unblock", lambda mac: gateway_call("unblock", mac=mac),
                           "unblocked", before=lambda m: {"blocked": True},
                           after={"blocked": False})


DONE["gone"] = lambda a: gettext("That device had no session any more; nothing was changed.")


# -- accounts ------------------------------------------------------------------------------------

@bp.route("/operators", methods=["GET", "POST"])
@admin_only
def operators_page() -> Any:
    db = state().db
    if request.method == "GET":
        return page("operators.html", operators=operators.listing(db), form={"role": "kasir"})
    form = {k: v for k, v in form_data().items() if "password" not in k}
    errors = _account_errors(request.form, new=True)
    if not errors:
        try:
            operators.add(db, request.form.get("name", ""), request.form.get("role", ""),
                          request.form.get("password", ""), actor=actor(),
                          full_name=text_field(request.form, "full_name", 64),
                          clock=state().clock)
        except UsageError as exc:
            errors["name"] = gettext("An account with this name exists already.") \
                if "exists" in exc.message else gettext("This name cannot be used.")
    if errors:
        return page("operators.html", 422, operators=operators.listing(db), form=form,
                    errors=errors)
    return flash_to("operator.operators_page", "operator")


def _account_errors(form: Any, new: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    if new:
        try:
            operators.check_name(form.get("name", ""))
        except UsageError:
            errors["name"] = gettext("2 to 32 small letters or digits, starting with a letter "
                                     "(for example: siti).")
        if form.get("role") not in ("admin", "kasir"):
            errors["role"] = gettext("Choose a role.")
    password = form.get("password", "")
    if new or password:
        try:
            operators.check_password(password, form.get("name", ""))
        except operators.PasswordError as exc:
            errors["password"] = gettext("At least 8 characters, not easy to guess.") \
                if "easy" not in exc.message else gettext("This password is too easy to guess.")
        if "password" not in errors and form.get("password2", "") != password:
            errors["password2"] = gettext("The two passwords differ.")
    return errors


@bp.route("/operators/<int:oid>", methods=["GET", "POST"])
@admin_only
def operator_edit(oid: int) -> Any:
    db = state().db
    try:
        row = operators.get(db, operator_id=oid)
    except NotFound:
        return render_error("not-found", 404)
    if request.method == "GET":
        return page("operator_form.html", o=row, form={"role": row.role,
                                                       "active": "1" if row.active else "",
                                                       "full_name": row.full_name or ""})
    form = {k: v for k, v in form_data().items() if "password" not in k}
    errors = _account_errors(dict(request.form, name=row.name), new=False)
    if request.form.get("role") not in ("admin", "kasir"):
        errors["role"] = gettext("Choose a role.")
    if not errors:
        try:
            operators.change(db, oid, actor=actor(), role=request.form.get("role"),
                             active=request.form.get("active") == "1",
                             full_name=text_field(request.form, "full_name", 64),
                             password=request.form.get("password") or None, clock=state().clock)
        except UsageError as exc:
            errors["role"] = gettext("This is the last admin: make another admin first.") \
                if "last" in exc.message else exc.message
    if errors:
        return page("operator_form.html", 422, o=row, form=form, errors=errors)
    return flash_to("operator.operators_page", "operator")


@bp.route("/account", methods=["GET", "POST"])
def account() -> Any:
    if request.method == "GET":
        return page("account.html")
    db = state().db
    errors = _account_errors(dict(request.form, name=g.op.name), new=False)
    if not request.form.get("password"):
        errors["password"] = gettext("Please fill this in.")
    try:
        operators.authenticate(db, g.op.name, request.form.get("current", ""),
                               request.remote_addr or "",
                               brake=operators.Brake.from_config(cfg()), clock=state().clock)
    except operators.LoginRefused:
        errors["current"] = gettext("This is not your current password.")
    if errors:
        return page("account.html", 422, errors=errors)
    operators.change(db, g.op.id, actor=actor(), password=request.form["password"],
                     clock=state().clock)
    # The change ended every login of this account, this one too: open a fresh one.
    op = operators.get(db, operator_id=g.op.id)
    token = operators.open_session(db, op, request.remote_addr or "",
                                   cfg().operator.session_hours, clock=state().clock)
    resp = make_response(flash_to("operator.dashboard", "password"))
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure,
                    path="/operator")
    return resp


# -- audit log -----------------------------------------------------------------------------------

@bp.get("/audit")
@admin_only
def audit_page() -> Any:
    before = _int(request.args.get("before"), 0) or None
    rows = audit.entries(state().db, limit=100, before_id=before)
    return page("audit.html", rows=rows, broken=audit.verify(state().db),
                older=rows[-1].id if len(rows) == 100 else None)


@bp.get("/audit.csv")
@admin_only
def audit_csv() -> Any:
    from sqlalchemy import select

    from hotspot.model_operator import AuditLog

    with state().db.connect() as conn:
        rows = list(conn.execute(select(AuditLog).order_by(AuditLog.id)))
    return csv_response("audit.csv", ["id", "at_utc", "actor", "role", "ip", "action", "target",
                                      "before", "after", "hash"],
                        [(r.id, r.at, r.actor, r.role, r.ip, r.action, r.target, r.before,
                          r.after, r.hash) for r in rows])
