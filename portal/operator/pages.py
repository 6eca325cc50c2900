"""How a console page answers: the page with its "done" note, CSV downloads, a safe "next"
link, the village's today, and the gateway and voucher key of this portal. Forms post to the
page they are on; a bad field gets its message next to it and the page comes back with
everything typed still in it (a 400/409/422), a done action is a 303 to a page that says so."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, make_response, render_template, request, url_for
from flask_babel import gettext, ngettext

from hotspot.csvcell import neutralize
from hotspot.errors import HotspotError, NotFound
from hotspot.timeutil import iso, local_day
from hotspot.vouchers.lookup import voucher_detail
from hotspot.vouchers.packages import get_package_title
from portal import fmt
from portal.operator.blueprint import cfg
from portal.operator.forms import int_or
from portal.state import state


def page(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    ctx.setdefault("errors", {})
    ctx.setdefault("form", {})
    return render_template(f"operator/{template}", done=done_text(), **ctx), status


DONE: dict[str, Callable[[dict[str, str]], str]] = {
    "sold": lambda a: _sold_text(int_or(a.get("id"), -1)),
    "sold-range": lambda a: ngettext(
        "%(num)d voucher marked sold.", "%(num)d vouchers marked sold.", int_or(a.get("n"))
    ),
    "unsold": lambda a: gettext("The sale was undone."),
    "void": lambda a: gettext("The voucher was withdrawn."),
    "void-batch": lambda a: ngettext(
        "%(num)d voucher withdrawn.", "%(num)d vouchers withdrawn.", int_or(a.get("n"))
    ),
    "package": lambda a: gettext("The package was saved."),
    "batch": lambda a: gettext("The batch was made. Print its sheet now."),
    "kicked": lambda a: gettext("The device was disconnected."),
    "extended": lambda a: gettext("The session was extended."),
    "blocked": lambda a: gettext("The device was blocked."),
    "unblocked": lambda a: gettext("The device was unblocked."),
    "operator": lambda a: gettext("The account was saved."),
    "password": lambda a: gettext("Your password was changed."),
    "expired": lambda a: ngettext(
        "%(num)d unsold voucher past its shelf life was withdrawn.",
        "%(num)d unsold vouchers past their shelf life were withdrawn.",
        int_or(a.get("n")),
    ),
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
    return gettext(
        "Sold: %(package)s, %(price)s. Take the cash.", package=title, price=fmt.rupiah(v["price"])
    )


def done_text() -> str:
    make = DONE.get(request.args.get("done", ""))
    return make(request.args) if make else ""


def voucher_key() -> bytes | None:
    svc = state().vouchers
    return svc.key if svc is not None else None


def gateway_call(op: str, **args: Any) -> Any:
    return state().gateway.call(op, **args)


def disconnect(macs: Iterable[str]) -> None:
    """End the sessions of these devices now (a withdrawn voucher's); one already gone is
    fine."""
    for mac in macs:
        try:
            gateway_call("deauthorize", mac=mac, reason="admin-kick")
        except HotspotError:
            pass


def safe_next(value: str | None) -> str:
    """Only our own console paths: never an open redirect."""
    if (
        value
        and value.startswith("/operator")
        and not value.startswith("//")
        and not urlsplit(value).netloc
        and "\\" not in value
    ):
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
    """No spreadsheet formulas from names or notes (CSV injection): the core's one helper."""
    if isinstance(v, dt.datetime):
        return iso(v)
    return neutralize(v)


def today_local() -> dt.date:
    return local_day(state().clock(), cfg().village.tz)


def parse_day(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default
