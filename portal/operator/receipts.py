"""Receipts (*Struk*): one voucher on a 58 mm or 80 mm receipt, printed from the kasir's
phone browser (a Bluetooth thermal printer through the phone's print service) or, when
``[printer]`` is on, straight to the USB receipt printer on the gateway. (The quick sale that
lands here is on the home screen: ``portal/operator/dashboard.py``.)

Who may see a receipt (docs/security.md, "A kasir never gets a sold code back"): the admin,
for any voucher not used yet (a card lost before use); a kasir only for a voucher they sold
themselves within the last ``RECEIPT_MINUTES`` — the one they are handing over now; an agent
for a card of their own stock (they hold the cards; a sold one, as a kasir)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import g, make_response, redirect, request, url_for
from flask_babel import gettext

from hotspot import audit
from hotspot.errors import NotFound
from hotspot.model import VoucherState
from hotspot.vouchers import agents
from hotspot.vouchers.batches import batch_codes, batch_info
from hotspot.vouchers.lookup import voucher_detail
from hotspot.vouchers.sales import sold_by
from portal import fmt
from portal.csp import CSP
from portal.operator import svg
from portal.operator.blueprint import actor, bp, cfg, local, render_error
from portal.operator.forms import int_or
from portal.operator.pages import page, voucher_key
from portal.operator.receipt_printer import PrinterError, Receipt, print_receipt
from portal.state import state

# How long after the sale a kasir may print (and print again) a voucher's receipt: enough
# for a printer that jammed or a dialog cancelled, not for codes sold earlier.
RECEIPT_MINUTES = 15
WIDTHS = (58, 80)


def _may_print(vid: int) -> bool:
    if g.op.role == "admin":
        return True
    if g.op.role == "agen":
        own = agents.owns_voucher(state().db, g.op.id, vid)
        if own is None or own.first_used_at is not None:
            return False
        if own.sold_at is None:
            return True
    sale = sold_by(state().db, vid)
    if sale is None or sale.operator_id != g.op.id:
        return False
    if sale.state != VoucherState.NEW.value:
        return False  # used or withdrawn: nothing to hand over
    return bool(state().clock() - sale.sold_at <= dt.timedelta(minutes=RECEIPT_MINUTES))


def _receipt(vid: int) -> dict[str, Any] | None:
    """The receipt's content, or None when the voucher is not there or not printable."""
    key = voucher_key()
    try:
        v = voucher_detail(state().db, vid)
    except NotFound:
        return None
    if key is None or v["state"] != VoucherState.NEW.value:
        return None
    b = batch_info(state().db, v["batch_id"])
    code = dict(batch_codes(state().db, key, v["batch_id"])).get(v["serial"])
    if code is None:
        return None
    base = state().urls.captive_base
    url = f"{base}/?code={code}"
    if b["data_mb"]:
        size = fmt.megabytes(b["data_mb"])
        terms = gettext("%(hours)s, %(data)s", hours=fmt.package_time(b), data=size)
    else:
        terms = fmt.package_time(b)
    valid = ""
    if v.get("valid_until") or b.get("valid_until"):
        valid = gettext(
            "Use before %(date)s",
            date=local(v.get("valid_until") or b["valid_until"], "d MMM yyyy"),
        )
    return {
        "vid": vid,
        "village": cfg().village.name,
        "package": b["title"],
        "price": fmt.rupiah(b["price"]),
        "terms": terms,
        "code": code,
        "url": url,
        "qr": svg.qr(url, code),
        "valid": valid,
        "serial": f"#{b['id']}/{v['serial']}",
        "portal": base,
        "sold_at": local(v["sold_at"]) if v.get("sold_at") else "",
    }


def _receipt_text(r: dict[str, Any]) -> Receipt:
    return Receipt(
        village=gettext("WiFi %(village)s", village=r["village"]),
        package=f"{r['package']} ({r['terms']})",
        price=r["price"],
        code=r["code"],
        qr_url=r["url"],
        validity=r["valid"] or gettext("Time starts at first use."),
        instructions=instructions(),
        footer=r["serial"],
    )


def instructions() -> str:
    return gettext(
        "1. Connect to the village WiFi. 2. The login page opens (or scan the QR code). "
        "3. Type the code and tap Connect."
    )


def _width() -> int:
    w = int_or(request.args.get("w"), cfg().printer.width_mm)
    return w if w in WIDTHS else 58


def _printable(vid: int) -> tuple[dict[str, Any] | None, Any]:
    """(the receipt's data, None) when this operator may print voucher ``vid`` now, else
    (None, the error page): the key must be loaded and the rule of _may_print hold."""
    if voucher_key() is None:
        return None, render_error("no-key", 503)
    r = _receipt(vid) if _may_print(vid) else None
    if r is None:
        return None, render_error("receipt-denied", 403)
    return r, None


def _audit_print(vid: int, how: dict[str, Any]) -> None:
    """Whoever sees a code could sell it: every receipt shown or printed is audited, like
    the A4 sheet."""
    with audit.write(state().db) as conn:
        audit.record(
            conn, actor(), "voucher.print", f"voucher:{vid}", after=how, at=state().clock()
        )


@bp.get("/receipt/<int:vid>")
def receipt(vid: int) -> Any:
    r, refusal = _printable(vid)
    if r is None:
        return refusal
    _audit_print(vid, {"receipt": True})
    return _with_script(
        page(
            "receipt.html",
            r=r,
            width=_width(),
            widths=WIDTHS,
            autoprint=request.args.get("print") == "1",
            instructions=instructions(),
            printer=cfg().printer.enabled,
            printed=request.args.get("printed") == "1",
        )
    )


def _with_script(result: tuple[str, int]) -> Any:
    """The receipt page runs one script of ours (receipt.js: the print dialog), so its
    policy allows scripts from the portal itself; every other page stays script-free."""
    resp = make_response(*result)
    resp.headers["Content-Security-Policy"] = f"{CSP}; script-src 'self'"
    return resp


@bp.post("/receipt/<int:vid>/escpos")
def receipt_escpos(vid: int) -> Any:
    printer = cfg().printer
    if not printer.enabled:
        return render_error("not-found", 404)
    r, refusal = _printable(vid)
    if r is None:
        return refusal
    try:
        print_receipt(printer.device, _receipt_text(r), printer.width_mm)
    except PrinterError:
        return _with_script(
            page(
                "receipt.html",
                503,
                r=r,
                width=printer.width_mm,
                widths=WIDTHS,
                autoprint=False,
                instructions=instructions(),
                printer=True,
                printed=False,
                error=gettext(
                    "The receipt printer did not print. Check that it is switched on, plugged "
                    "in and has paper, then try again."
                ),
            )
        )
    _audit_print(vid, {"escpos": printer.device})
    return redirect(url_for("operator.receipt", vid=vid, printed=1), code=303)
