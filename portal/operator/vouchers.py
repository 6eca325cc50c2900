"""Selling (*Jual*) and looking a voucher up (*Periksa kode*): mark sold, undo a sale,
withdraw one."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_babel import gettext

from hotspot.errors import ErrorCode, HotspotError, NotFound
from hotspot.vouchers import ledger
from hotspot.vouchers.lookup import find_voucher, voucher_detail
from hotspot.vouchers.sales import SaleError, cancel_sale, mark_sold
from hotspot.vouchers.withdrawal import void_one
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, local, render_error
from portal.operator.forms import int_or, text_field
from portal.operator.pages import disconnect, page, today_local, voucher_key
from portal.state import state

VOUCHER_ERRORS = {
    ErrorCode.VOUCHER_UNKNOWN: lambda: gettext("No voucher has this code. Check it and try again."),
    ErrorCode.VOUCHER_SOLD: lambda: gettext("This voucher was sold already."),
    ErrorCode.VOUCHER_VOID: lambda: gettext("This voucher was withdrawn; it cannot be sold."),
    ErrorCode.VOUCHER_USED: lambda: gettext("A used voucher's sale cannot be undone."),
    ErrorCode.VOUCHER_UNSOLD: lambda: gettext("This voucher was not marked sold."),
    ErrorCode.VOUCHER_AGENT: lambda: gettext(
        "This voucher was given to an agent: the agent sells it and marks it sold."
    ),
}


def _find(code: str) -> int | None:
    key = voucher_key()
    if key is None:
        raise HotspotError("no voucher key", code=ErrorCode.NO_KEY)
    return find_voucher(state().db, key, code)


@bp.route("/sell", methods=["GET", "POST"])
def sell() -> Any:
    db = state().db
    today = today_local()
    mine = [s for s in ledger.sales(db, cfg(), today, today) if s.kasir == g.op.name]
    ctx = {
        "mine_count": len(mine),
        "mine_rupiah": sum(s.price for s in mine),
        "first_use": cfg().operator.sold_at == "first-use",
    }
    if request.method == "GET":
        return page("sell.html", **ctx)
    code = (request.form.get("code") or "")[:40]
    if voucher_key() is None:
        return render_error("no-key", 503)
    vid = _find(code)
    if vid is None:
        return page(
            "sell.html", 404, code=code, error=VOUCHER_ERRORS[ErrorCode.VOUCHER_UNKNOWN](), **ctx
        )
    try:
        sale = mark_sold(db, vid, actor=actor(), clock=state().clock)
    except SaleError as exc:
        detail = voucher_detail(db, vid)
        msg = VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS[ErrorCode.VOUCHER_UNKNOWN])()
        if exc.code is ErrorCode.VOUCHER_SOLD:
            msg = gettext(
                "This voucher was sold already, by %(who)s on %(when)s.",
                who=detail["sold_by"] or gettext("(not recorded)"),
                when=local(detail["sold_at"]),
            )
        return page("sell.html", 409, code=code, error=msg, **ctx)
    return flash_to("operator.sell", "sold", id=sale["voucher_id"])


@bp.get("/voucher")
def voucher_lookup() -> Any:
    code = (request.args.get("code") or "")[:40]
    vid_arg = request.args.get("id")
    if not code and not vid_arg:
        return page("voucher.html", v=None, code="")
    if vid_arg:
        vid: int | None = int_or(vid_arg, -1)
    else:
        if voucher_key() is None:
            return render_error("no-key", 503)
        vid = _find(code)
    try:
        v = voucher_detail(state().db, vid) if vid is not None else None
    except NotFound:
        v = None
    if v is None:
        return page(
            "voucher.html",
            404,
            v=None,
            code=code,
            error=VOUCHER_ERRORS[ErrorCode.VOUCHER_UNKNOWN](),
        )
    return page("voucher.html", v=v, code=code, now=state().clock())


@bp.post("/voucher/<int:vid>/void")
@admin_only
def voucher_void(vid: int) -> Any:
    reason = text_field(request.form, "reason", 200)
    if not reason:
        return _voucher_page(vid, 422, errors={"reason": gettext("Please say why.")})
    try:
        out = void_one(state().db, vid, actor=actor(), reason=reason, clock=state().clock)
    except SaleError as exc:
        return _refused(vid, exc, ErrorCode.VOUCHER_VOID)
    disconnect(out["devices"])
    return flash_to("operator.voucher_lookup", "void", id=vid)


@bp.post("/voucher/<int:vid>/unsell")
@admin_only
def voucher_unsell(vid: int) -> Any:
    try:
        cancel_sale(
            state().db,
            vid,
            actor=actor(),
            reason=text_field(request.form, "reason", 200),
            clock=state().clock,
        )
    except SaleError as exc:
        return _refused(vid, exc, ErrorCode.VOUCHER_USED)
    return flash_to("operator.voucher_lookup", "unsold", id=vid)


@bp.post("/voucher/<int:vid>/sell")
def voucher_sell(vid: int) -> Any:
    try:
        mark_sold(state().db, vid, actor=actor(), clock=state().clock)
    except SaleError as exc:
        return _refused(vid, exc, ErrorCode.VOUCHER_SOLD)
    return flash_to("operator.voucher_lookup", "sold", id=vid)


def _voucher_page(vid: int, status: int, **ctx: Any) -> Any:
    """The voucher's own page again, with what stopped the action on it."""
    return page("voucher.html", status, v=_detail_or_404(vid), code="", now=state().clock(), **ctx)


def _refused(vid: int, exc: SaleError, fallback: ErrorCode) -> Any:
    """The voucher's page saying why a sale, undo or void was refused (409); ``fallback``
    words a refusal code the table has no text for."""
    text = VOUCHER_ERRORS.get(exc.code, VOUCHER_ERRORS[fallback])
    return _voucher_page(vid, 409, error=text())


def _detail_or_404(vid: int) -> dict[str, Any]:
    try:
        return voucher_detail(state().db, vid)
    except NotFound:
        from werkzeug.exceptions import NotFound as HTTPNotFound

        raise HTTPNotFound() from None
