"""Batches and sheets (*Voucher*): making a batch, its page, selling a range, withdrawing it,
the printable A4 sheet and the codes as CSV."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_babel import gettext

from hotspot import audit
from hotspot.errors import NotFound
from hotspot.vouchers.agents import batch_agent
from hotspot.vouchers.batches import (
    batch_codes,
    batch_info,
    batch_vouchers,
    create_batch_audited,
    list_batches,
)
from hotspot.vouchers.packages import all_packages
from hotspot.vouchers.sales import SaleError, mark_batch_sold
from hotspot.vouchers.withdrawal import void_batch
from portal.operator import svg
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import form_data, int_or, text_field, whole
from portal.operator.pages import csv_response, disconnect, page, voucher_key
from portal.state import state


@bp.route("/batches", methods=["GET", "POST"])
def batches() -> Any:
    db = state().db
    on_sale = [p for p in all_packages(db) if p.active]
    ctx: dict[str, Any] = {
        "batches": list_batches(db),
        "packages": on_sale,
        "max_batch": cfg().operator.max_batch,
    }
    if request.method == "GET":
        return page("batches.html", form={"count": "20"}, **ctx)
    if g.op.role != "admin":
        return render_error("admin-only", 403)
    form = form_data()
    errors: dict[str, str] = {}
    pid = int_or(form.get("package"), -1)
    if pid not in {p.id for p in on_sale}:
        errors["package"] = gettext("Choose a package.")
    raw = (form.get("count") or "").strip()
    count = int_or(raw, -1) if raw.lstrip("-").isdigit() else None
    cap = cfg().operator.max_batch
    if count is None or count < 1:
        errors["count"] = gettext("Enter how many vouchers to make, from 1 to %(max)d.", max=cap)
    elif count > cap:
        errors["count"] = gettext(
            "At most %(max)d vouchers in one batch. Make several batches if you need more.", max=cap
        )
    key = voucher_key()
    if key is None:
        return render_error("no-key", 503)
    if errors:
        return page("batches.html", 422, form=form, errors=errors, **ctx)
    assert count is not None  # no errors: the count was given
    batch = create_batch_audited(
        db,
        key,
        pid,
        count,
        actor=actor(),
        note=text_field(form, "note", 200) or None,
        max_count=cap,
        clock=state().clock,
    )
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
    n = min(max(1, int_or(request.args.get("page"), 1)), pages)
    return page(
        "batch.html",
        status,
        b=info,
        vouchers=rows[(n - 1) * PER_PAGE : n * PER_PAGE],
        page_no=n,
        pages=pages,
        agent=batch_agent(state().db, info["id"]),
        **ctx,
    )


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
    assert first is not None and last is not None  # no errors: both were given
    try:
        n, _skipped = mark_batch_sold(db, bid, first, last, actor=actor(), clock=state().clock)
    except SaleError:  # an agent's batch: theirs to sell
        return _batch_page(409, info, form=form, errors={"first": _agents_batch_text()})
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
    out = void_batch(
        db,
        bid,
        actor=actor(),
        reason=reason,
        include_sold=form.get("include_sold") == "1",
        clock=state().clock,
    )
    disconnect(out["devices"])
    return flash_to("operator.batch", "void-batch", bid=bid, n=out["voided"])


def _agents_batch_text() -> str:
    return gettext("This batch was given to an agent: the agent sells it and marks it sold.")


def _sheet_codes(bid: int) -> tuple[dict[str, Any], list[tuple[int, str]]] | Any:
    key = voucher_key()
    if key is None:
        return render_error("no-key", 503)
    try:
        info = batch_info(state().db, bid)
    except NotFound:
        return render_error("not-found", 404)
    include_sold = request.args.get("sold") == "1"
    if g.op.role != "admin" and batch_agent(state().db, bid) is not None:
        # An agent's stock: the agent prints it (My stock); a kasir holding the codes could
        # sell them and the agent would owe for them.
        return render_error("admin-only", 403)
    if include_sold and g.op.role != "admin":
        # A sold, unused code is a villager's paid access: only the admin may print it again
        # (a card lost before use); a kasir printing it could use or resell it.
        return render_error("admin-only", 403)
    rows = batch_vouchers(state().db, bid)
    wanted = {
        r["serial"] for r in rows if r["state"] == "new" and (include_sold or r["sold_at"] is None)
    }
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
        audit.record(
            conn,
            actor(),
            "batch.print",
            f"batch:{bid}",
            after={"cards": len(cards)},
            at=state().clock(),
        )
    return page("sheet.html", b=info, cards=cards, portal=base)


@bp.get("/batches/<int:bid>/codes.csv")
@admin_only
def batch_csv(bid: int) -> Any:
    got = _sheet_codes(bid)
    if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[0], dict):
        return got
    info, codes = got
    with audit.write(state().db) as conn:
        audit.record(
            conn,
            actor(),
            "batch.export",
            f"batch:{bid}",
            after={"codes": len(codes)},
            at=state().clock(),
        )
    return csv_response(
        f"batch-{bid}-codes.csv",
        [
            "batch",
            "serial",
            "code",
            "package",
            "price_rupiah",
            "hours",
            "data_mb",
            "devices",
            "valid_until",
        ],
        [
            (
                bid,
                s,
                c,
                info["package"],
                info["price"],
                info["hours"],
                info["data_mb"],
                info["devices"],
                info["valid_until"],
            )
            for s, c in codes
        ],
    )
