"""Agents (*Agen*, issue #13 item 4): warung owners who resell vouchers.

The agent's side (role ``agen``; ``blueprint.AGENT_PAGES`` is all they may open): *My stock*
— their batches with what is left, one-tap sale (the next card, then its receipt) or marking
a card of their printed sheet by its number, the sheet of their unsold cards, and what they
owe the BUMDes. An agent asking for a batch that is not theirs gets the same 404 as for one
that does not exist.

The admin's side (*Agen*): per agent stock, sold, due at the agent's price, commission,
paid and owed; assigning a batch; recording a payment (one-time token: a double submit
records one payment). The arithmetic is ``hotspot/vouchers/agents.py``'s.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import g, redirect, url_for
from flask_babel import gettext

from hotspot import audit
from hotspot.errors import ErrorCode, NotFound, UsageError
from hotspot.vouchers import agents
from hotspot.vouchers.batches import batch_codes, batch_info, list_batches
from hotspot.vouchers.sales import SaleError
from portal import fmt
from portal.operator import svg
from portal.operator.blueprint import actor, admin_only, bp, flash_to, render_error
from portal.operator.forms import form_data, int_or, text_field, whole
from portal.operator.pages import DONE, page, voucher_key
from portal.state import state

log = logging.getLogger(__name__)


def _token() -> str:
    return secrets.token_urlsafe(24)


# -- the agent's side -------------------------------------------------------------------------


def _home(status: int = 200, **ctx: Any) -> Any:
    db = state().db
    return page(
        "agent_home.html",
        status,
        me=agents.agent_summary(db, g.op.id),
        batches=[{**b, "token": _token()} for b in agents.agent_batches(db, g.op.id)],
        **ctx,
    )


@bp.get("/agent")
def agent_home() -> Any:
    if g.op.role != "agen":
        return redirect(url_for("operator.dashboard"), code=303)
    return _home()


@bp.post("/agent/sell")
def agent_sell() -> Any:
    if g.op.role != "agen":
        return render_error("not-found", 404)
    form = form_data()
    bid = int_or(form.get("batch"), -1)
    token = (form.get("token") or "").strip()
    if bid < 0 or not token:
        return render_error("bad-request", 400)
    errors: dict[str, str] = {}
    serial = whole(form, "serial", 1, 100_000, errors, required=False)
    if errors:
        return _home(422, form=form, errors=errors, error_batch=bid)
    if voucher_key() is None:
        return render_error("no-key", 503)
    try:
        sale = agents.sell(
            state().db, bid, token, actor=actor(), serial=serial, clock=state().clock
        )
    except UsageError:
        return render_error("bad-request", 400)
    except SaleError as exc:
        log.info("agent %s sale in batch %s refused: %s", g.op.name, bid, exc.message)
        msg = {
            ErrorCode.OUT_OF_STOCK: gettext(
                "No card of this batch is left. Ask the BUMDes admin for a new batch."
            ),
            ErrorCode.VOUCHER_SOLD: gettext(
                "This card is not in your stock any more (sold, used or cancelled)."
            ),
        }.get(exc.code, gettext("No card with this number is in your stock."))
        return _home(409, form=form, errors={"serial": msg}, error_batch=bid)
    if serial is None:  # the next card: its receipt, to print and hand over
        return redirect(url_for("operator.receipt", vid=sale["voucher_id"], print=1), code=303)
    return flash_to("operator.agent_home", "sold", id=sale["voucher_id"])


@bp.get("/agent/batches/<int:bid>/sheet")
def agent_sheet(bid: int) -> Any:
    if g.op.role != "agen":
        return redirect(url_for("operator.batch_sheet", bid=bid), code=303)
    key = voucher_key()
    if key is None:
        return render_error("no-key", 503)
    db = state().db
    try:
        stock = set(agents.stock_vouchers(db, g.op.id, bid))
    except NotFound:
        return render_error("not-found", 404)  # not theirs looks like not there
    info = batch_info(db, bid)
    base = state().urls.captive_base
    cards = [
        {"serial": s, "code": c, "qr": svg.qr(f"{base}/?code={c}", c)}
        for s, c in batch_codes(db, key, bid)
        if s in stock
    ]
    with audit.write(db) as conn:
        audit.record(
            conn,
            actor(),
            "batch.print",
            f"batch:{bid}",
            after={"cards": len(cards), "agent": g.op.name},
            at=state().clock(),
        )
    return page("sheet.html", b=info, cards=cards, portal=base)


# -- the admin's side -------------------------------------------------------------------------


def _assignable() -> list[dict[str, Any]]:
    """Batches that may go to an agent: no agent yet, nothing sold or used, some stock."""
    db = state().db
    held = {b["id"] for row in agents.ledger(db) for b in agents.agent_batches(db, row["id"])}
    return [
        b
        for b in list_batches(db)
        if b["id"] not in held
        and b["states"]["new"] > 0
        and b["states"]["sold"] == 0
        and b["states"]["used"] == 0
    ]


def _admin_page(status: int = 200, **ctx: Any) -> Any:
    db = state().db
    rows = agents.ledger(db)
    ctx.setdefault("assign_form", {})
    ctx.setdefault("settle_form", {})
    ctx.setdefault("assign_errors", {})
    ctx.setdefault("settle_errors", {})
    return page(
        "agents.html",
        status,
        rows=rows,
        totals={
            k: sum(r[k] for r in rows)
            for k in ("stock", "sold", "sold_rupiah", "due", "commission", "paid", "owed")
        },
        batches_of={r["id"]: agents.agent_batches(db, r["id"]) for r in rows},
        assignable=_assignable(),
        settlements=agents.settlements(db)[:50],
        settle_token=_token(),
        rupiah=fmt.rupiah,
        **ctx,
    )


@bp.get("/agents")
@admin_only
def agents_page() -> Any:
    return _admin_page()


@bp.post("/agents/assign")
@admin_only
def agents_assign() -> Any:
    form = form_data()
    errors: dict[str, str] = {}
    db = state().db
    agent_id = int_or(form.get("agent"), -1)
    if agent_id not in {r["id"] for r in agents.ledger(db) if r["active"]}:
        errors["agent"] = gettext("Choose an agent.")
    bid = int_or(form.get("batch"), -1)
    batch = next((b for b in _assignable() if b["id"] == bid), None)
    if batch is None:
        errors["batch"] = gettext("Choose a batch from the list.")
    price = whole(form, "price", 0, batch["price"] if batch else 10**9, errors)
    if errors:
        return _admin_page(422, assign_form=form, assign_errors=errors)
    assert batch is not None and price is not None  # no errors: both were given
    try:
        agents.assign(db, bid, agent_id, price, actor=actor(), clock=state().clock)
    except (UsageError, NotFound) as exc:
        # Taken by another admin meanwhile (two tabs): the list is fresh on the page again.
        log.info("assigning batch %s refused: %s", bid, exc.message)
        errors["batch"] = gettext("This batch cannot be given to an agent any more.")
        return _admin_page(409, assign_form=form, assign_errors=errors)
    return flash_to("operator.agents_page", "agent-assigned")


@bp.post("/agents/settle")
@admin_only
def agents_settle() -> Any:
    form = form_data()
    errors: dict[str, str] = {}
    db = state().db
    agent_id = int_or(form.get("agent"), -1)
    if agent_id not in {r["id"] for r in agents.ledger(db)}:
        errors["agent"] = gettext("Choose an agent.")
    amount = whole(form, "amount", 1, agents.MAX_SETTLEMENT, errors)
    token = (form.get("token") or "").strip()
    if not agents.TOKEN.match(token):
        return render_error("bad-request", 400)
    if errors:
        return _admin_page(422, settle_form=form, settle_errors=errors)
    assert amount is not None  # no errors: it was given
    try:
        got = agents.settle(
            db,
            agent_id,
            amount,
            token,
            actor=actor(),
            note=text_field(form, "note", 200),
            clock=state().clock,
        )
    except NotFound:  # the account went meanwhile (another admin's tab)
        errors["agent"] = gettext("Choose an agent.")
        return _admin_page(409, settle_form=form, settle_errors=errors)
    return flash_to("operator.agents_page", "agent-paid", id=got["id"])


DONE["agent-assigned"] = lambda a: gettext("The batch was given to the agent.")
DONE["agent-paid"] = lambda a: gettext("The payment was recorded.")
