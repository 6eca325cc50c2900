"""Selling: a kasir marks a voucher (or a range of a batch) sold, exactly once; an admin
undoes a mistaken mark. Each writes the audit log in the same transaction. A batch handed to
an agent is the agent's to sell (``hotspot/vouchers/agents.py``): these paths refuse its
vouchers (``voucher-agent``) and the quick sale never picks them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from hotspot.audit import Actor
from hotspot.audit import record as _audit
from hotspot.audit import write as _write
from hotspot.errors import ErrorCode, NotFound
from hotspot.model import Package, Voucher, VoucherBatch, VoucherState
from hotspot.model_operator import AgentBatch, QuickSale, VoucherSale
from hotspot.timeutil import utcnow
from hotspot.vouchers.errors import VoucherError


class SaleError(VoucherError):
    """``voucher-sold`` (sold already), ``voucher-void``, ``voucher-used`` (cannot undo a
    sale of a used voucher), ``voucher-unknown``."""


def _sale_row(conn: Connection, voucher_id: int) -> Any:
    return conn.execute(
        select(
            Voucher.id,
            Voucher.state,
            Voucher.serial,
            Voucher.batch_id,
            Voucher.sold_at,
            Voucher.first_used_at,
            Voucher.valid_until,
            VoucherBatch.price,
            VoucherBatch.package_name,
            VoucherSale.operator,
            Package.title,
        )
        .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
        .join(Package, VoucherBatch.package_id == Package.id)
        .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
        .where(Voucher.id == voucher_id)
    ).first()


def mark_sold(
    engine: Engine, voucher_id: int, *, actor: Actor, clock: Callable[[], dt.datetime] = utcnow
) -> dict[str, Any]:
    """A kasir took the cash for this voucher. Exactly once: a second mark is refused
    (``voucher-sold``, naming who sold it). A voucher already used may still be marked (the
    kasir forgot): the sale is then attributed to the kasir. A voucher of an agent's batch
    is refused (``voucher-agent``): the agent owes for it, the kasir's drawer does not."""
    now = clock()
    with _write(engine) as conn:
        if _agents_batch(conn, voucher_id=voucher_id):
            raise SaleError("this voucher is in an agent's stock", code=ErrorCode.VOUCHER_AGENT)
        return _sell_in(conn, voucher_id, actor=actor, now=now)


def _agents_batch(conn: Connection, *, voucher_id: int = 0, batch_id: int = 0) -> bool:
    q = select(AgentBatch.batch_id)
    if voucher_id:
        q = q.join(Voucher, Voucher.batch_id == AgentBatch.batch_id).where(Voucher.id == voucher_id)
    else:
        q = q.where(AgentBatch.batch_id == batch_id)
    return conn.execute(q).first() is not None


def _sell_in(
    conn: Connection, voucher_id: int, *, actor: Actor, now: dt.datetime
) -> dict[str, Any]:
    """Mark one voucher sold inside the caller's write transaction (see ``mark_sold``)."""
    v = _sale_row(conn, voucher_id)
    if v is None:
        raise SaleError("no such voucher", code=ErrorCode.VOUCHER_UNKNOWN)
    if v.state == VoucherState.VOID.value:
        raise SaleError("this voucher was withdrawn", code=ErrorCode.VOUCHER_VOID)
    if v.sold_at is not None or v.operator is not None:
        raise SaleError(f"sold already by {v.operator or '?'}", code=ErrorCode.VOUCHER_SOLD)
    res = conn.execute(
        update(Voucher)
        .where(Voucher.id == voucher_id, Voucher.sold_at.is_(None))
        .values(sold_at=now)
    )
    if res.rowcount != 1:  # pragma: no cover - impossible under the write lock
        raise SaleError("sold already", code=ErrorCode.VOUCHER_SOLD)
    conn.execute(
        insert(VoucherSale).values(
            voucher_id=voucher_id,
            sold_at=now,
            operator_id=actor.id,
            operator=actor.name[:32],
            price=v.price,
        )
    )
    sale = {
        "voucher_id": voucher_id,
        "batch_id": v.batch_id,
        "serial": v.serial,
        "package": v.package_name,
        "title": v.title,
        "price": v.price,
        "sold_at": now,
        "used": v.first_used_at is not None,
    }
    _audit(
        conn,
        actor,
        "voucher.sell",
        f"voucher:{voucher_id}",
        before={"sold_at": None},
        after={"sold_at": now, "price": v.price, "batch": v.batch_id, "serial": v.serial},
        at=now,
    )
    return sale


def mark_batch_sold(
    engine: Engine,
    batch_id: int,
    first: int,
    last: int,
    *,
    actor: Actor,
    clock: Callable[[], dt.datetime] = utcnow,
) -> tuple[int, int]:
    """Mark serials ``first``..``last`` of a batch sold (a handful sold at once, e.g. to a
    warung). Returns (marked, skipped: sold already or withdrawn)."""
    now = clock()
    if first > last:
        first, last = last, first
    with _write(engine) as conn:
        batch = conn.execute(select(VoucherBatch).where(VoucherBatch.id == batch_id)).first()
        if batch is None:
            raise NotFound(f"no batch {batch_id}")
        if _agents_batch(conn, batch_id=batch_id):
            raise SaleError("this batch is in an agent's stock", code=ErrorCode.VOUCHER_AGENT)
        rows = conn.execute(
            select(Voucher.id, Voucher.serial, Voucher.state, Voucher.sold_at)
            .where(Voucher.batch_id == batch_id, Voucher.serial >= first, Voucher.serial <= last)
            .order_by(Voucher.serial)
        ).all()
        ok = [r for r in rows if r.sold_at is None and r.state != VoucherState.VOID.value]
        for r in ok:
            conn.execute(update(Voucher).where(Voucher.id == r.id).values(sold_at=now))
        if ok:
            conn.execute(
                insert(VoucherSale),
                [
                    dict(
                        voucher_id=r.id,
                        sold_at=now,
                        operator_id=actor.id,
                        operator=actor.name[:32],
                        price=batch.price,
                    )
                    for r in ok
                ],
            )
            _audit(
                conn,
                actor,
                "voucher.sell",
                f"batch:{batch_id}",
                before={"sold": 0},
                after={
                    "serials": f"{ok[0].serial}-{ok[-1].serial}",
                    "sold": len(ok),
                    "price_each": batch.price,
                    "rupiah": len(ok) * batch.price,
                },
                at=now,
            )
        return len(ok), len(rows) - len(ok)


def cancel_sale(
    engine: Engine,
    voucher_id: int,
    *,
    actor: Actor,
    reason: str = "",
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Undo a kasir's mark on a voucher nobody used yet (marked by mistake; the cash goes
    back). A used voucher's sale stands (void it, as a refund, instead)."""
    now = clock()
    with _write(engine) as conn:
        v = _sale_row(conn, voucher_id)
        if v is None:
            raise SaleError("no such voucher", code=ErrorCode.VOUCHER_UNKNOWN)
        if v.sold_at is None:
            raise SaleError("this voucher was not marked sold", code=ErrorCode.VOUCHER_UNSOLD)
        if v.state != VoucherState.NEW.value:
            raise SaleError(
                "a used or withdrawn voucher's sale cannot be undone", code=ErrorCode.VOUCHER_USED
            )
        conn.execute(delete(VoucherSale).where(VoucherSale.voucher_id == voucher_id))
        conn.execute(update(Voucher).where(Voucher.id == voucher_id).values(sold_at=None))
        _audit(
            conn,
            actor,
            "voucher.unsell",
            f"voucher:{voucher_id}",
            before={"sold_at": v.sold_at, "sold_by": v.operator, "price": v.price},
            after={"sold_at": None, "reason": reason[:200] or None},
            at=now,
        )
        return {"voucher_id": voucher_id, "price": v.price, "sold_by": v.operator}


def stock_by_package(
    engine: Engine, *, clock: Callable[[], dt.datetime] = utcnow
) -> dict[int, int]:
    """Unsold, unused vouchers still good to sell, per package id (the quick-sale buttons);
    agents' stock not included."""
    now = clock()
    with engine.connect() as conn:
        rows = conn.execute(
            select(VoucherBatch.package_id, func.count(Voucher.id))
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(*_sellable(now), VoucherBatch.id.not_in(select(AgentBatch.batch_id)))
            .group_by(VoucherBatch.package_id)
        ).all()
    return {pid: n for pid, n in rows}


def _sellable(now: dt.datetime) -> tuple[Any, ...]:
    return (
        Voucher.state == VoucherState.NEW.value,
        Voucher.sold_at.is_(None),
        or_(Voucher.valid_until.is_(None), Voucher.valid_until > now),
    )


def _earlier_sale(
    conn: Connection, token: str, actor: Actor, foreign: ErrorCode
) -> dict[str, Any] | None:
    """The sale a form's one-time ``token`` already made (the kasir's quick sale, an agent's
    sale), as ``repeat=True``; None when the token is new. Another operator's token is not
    theirs to see (the form is per session): ``SaleError`` with the ``foreign`` code."""
    done = conn.execute(
        select(QuickSale.voucher_id, QuickSale.operator_id).where(QuickSale.token == token)
    ).first()
    if done is None:
        return None
    if done.operator_id != actor.id:
        raise SaleError("not your sale", code=foreign)
    return {"voucher_id": done.voucher_id, "repeat": True}


def quick_sell(
    engine: Engine,
    package_id: int,
    token: str,
    *,
    actor: Actor,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Sell the next unsold voucher of a package (oldest batch, lowest serial first) in one
    tap. ``token`` is the form's one-time token: the same token again (a double tap, a
    reload of the POST) returns the voucher it sold the first time with ``repeat=True`` and
    sells nothing. ``out-of-stock`` when no voucher of the package is left to sell."""
    now = clock()
    token = token[:64]
    with _write(engine) as conn:
        earlier = _earlier_sale(conn, token, actor, ErrorCode.VOUCHER_SOLD)
        if earlier is not None:
            return earlier
        vid = conn.execute(
            select(Voucher.id)
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(
                VoucherBatch.package_id == package_id,
                *_sellable(now),
                VoucherBatch.id.not_in(select(AgentBatch.batch_id)),
            )
            .order_by(VoucherBatch.id, Voucher.serial)
            .limit(1)
        ).scalar()
        if vid is None:
            raise SaleError("no voucher of this package is left", code=ErrorCode.OUT_OF_STOCK)
        sale = _sell_in(conn, vid, actor=actor, now=now)
        conn.execute(
            insert(QuickSale).values(
                token=token, voucher_id=vid, operator_id=actor.id, created_at=now
            )
        )
        return {**sale, "repeat": False}


def sold_by(engine: Engine, voucher_id: int) -> Any:
    """Who sold a voucher and when (``operator_id``, ``operator``, ``sold_at``), and its
    state; None when it is not sold or does not exist."""
    with engine.connect() as conn:
        return conn.execute(
            select(
                VoucherSale.operator_id, VoucherSale.operator, VoucherSale.sold_at, Voucher.state
            )
            .join(Voucher, Voucher.id == VoucherSale.voucher_id)
            .where(VoucherSale.voucher_id == voucher_id)
        ).first()
