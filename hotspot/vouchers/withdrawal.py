"""Withdrawing vouchers: one (a lost card, a refund), a batch (a lost sheet), and unsold
stock past its shelf life (reason "expired"). Audited, except the bare :func:`void_voucher`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select, update

from hotspot.audit import SYSTEM, Actor
from hotspot.audit import record as _audit
from hotspot.audit import write as _write
from hotspot.errors import ErrorCode, NotFound
from hotspot.model import Voucher, VoucherBatch, VoucherDevice, VoucherState
from hotspot.timeutil import utcnow
from hotspot.vouchers.sales import SaleError


def void_voucher(
    engine: Engine, voucher_id: int, reason: str = "", clock: Callable[[], dt.datetime] = utcnow
) -> bool:
    """Withdraw a voucher (lost sheet, refund). True if it changed."""
    with engine.begin() as conn:
        res = conn.execute(
            update(Voucher)
            .where(Voucher.id == voucher_id, Voucher.state != VoucherState.VOID.value)
            .values(
                state=VoucherState.VOID.value,
                voided_at=clock(),
                void_reason=(reason or None) and reason[:200],
            )
        )
        return res.rowcount == 1


def void_one(
    engine: Engine,
    voucher_id: int,
    *,
    actor: Actor,
    reason: str,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Withdraw one voucher (lost card, refund), audited. Returns its state before and the
    MACs bound to it (the console disconnects them)."""
    now = clock()
    with _write(engine) as conn:
        v = conn.execute(select(Voucher).where(Voucher.id == voucher_id)).first()
        if v is None:
            raise SaleError("no such voucher", code=ErrorCode.VOUCHER_UNKNOWN)
        if v.state == VoucherState.VOID.value:
            raise SaleError("this voucher was withdrawn already", code=ErrorCode.VOUCHER_VOID)
        conn.execute(
            update(Voucher)
            .where(Voucher.id == voucher_id)
            .values(state=VoucherState.VOID.value, voided_at=now, void_reason=reason[:200] or None)
        )
        macs = [
            m
            for (m,) in conn.execute(
                select(VoucherDevice.mac).where(VoucherDevice.voucher_id == voucher_id)
            )
        ]
        _audit(
            conn,
            actor,
            "voucher.void",
            f"voucher:{voucher_id}",
            before={"state": v.state, "sold_at": v.sold_at},
            after={"state": "void", "reason": reason[:200] or None},
            at=now,
        )
        return {
            "voucher_id": voucher_id,
            "state_before": v.state,
            "devices": macs,
            "was_sold": v.sold_at is not None,
        }


def void_batch(
    engine: Engine,
    batch_id: int,
    *,
    actor: Actor,
    reason: str,
    include_sold: bool = False,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Withdraw a batch (a lost or stolen sheet): its unsold, unused vouchers — and, with
    ``include_sold``, also the sold and running ones. Returns the counts and the MACs of
    devices on running vouchers it withdrew."""
    now = clock()
    with _write(engine) as conn:
        if conn.execute(select(VoucherBatch.id).where(VoucherBatch.id == batch_id)).first() is None:
            raise NotFound(f"no batch {batch_id}")
        rows = conn.execute(
            select(Voucher.id, Voucher.state, Voucher.sold_at).where(
                Voucher.batch_id == batch_id,
                Voucher.state.in_((VoucherState.NEW.value, VoucherState.ACTIVE.value)),
            )
        ).all()
        chosen = [
            r
            for r in rows
            if include_sold or (r.state == VoucherState.NEW.value and r.sold_at is None)
        ]
        ids = [r.id for r in chosen]
        for i in range(0, len(ids), 500):
            conn.execute(
                update(Voucher)
                .where(Voucher.id.in_(ids[i : i + 500]))
                .values(
                    state=VoucherState.VOID.value, voided_at=now, void_reason=reason[:200] or None
                )
            )
        running = [r.id for r in chosen if r.state == VoucherState.ACTIVE.value]
        macs = (
            [
                m
                for (m,) in conn.execute(
                    select(VoucherDevice.mac).where(VoucherDevice.voucher_id.in_(running))
                )
            ]
            if running
            else []
        )
        out = {
            "voided": len(ids),
            "kept": len(rows) - len(ids),
            "sold_voided": sum(1 for r in chosen if r.sold_at is not None),
            "running_voided": len(running),
            "devices": macs,
        }
        if ids:
            _audit(
                conn,
                actor,
                "batch.void",
                f"batch:{batch_id}",
                before={"voidable": len(rows)},
                after={
                    "voided": len(ids),
                    "sold_voided": out["sold_voided"],
                    "running_voided": len(running),
                    "reason": reason[:200] or None,
                },
                at=now,
            )
        return out


def expire_unsold(
    engine: Engine, *, actor: Actor = SYSTEM, clock: Callable[[], dt.datetime] = utcnow
) -> int:
    """Unsold stock past its shelf life (``valid_until``) is withdrawn (reason "expired").
    Sold vouchers are left alone: their sale stands, and the portal refuses them anyway."""
    now = clock()
    with engine.connect() as conn:  # cheap check first: most calls find nothing
        if (
            conn.execute(
                select(Voucher.id)
                .where(
                    Voucher.state == VoucherState.NEW.value,
                    Voucher.sold_at.is_(None),
                    Voucher.valid_until.is_not(None),
                    Voucher.valid_until <= now,
                )
                .limit(1)
            ).first()
            is None
        ):
            return 0
    with _write(engine) as conn:
        rows = conn.execute(
            select(Voucher.id, Voucher.batch_id).where(
                Voucher.state == VoucherState.NEW.value,
                Voucher.sold_at.is_(None),
                Voucher.valid_until.is_not(None),
                Voucher.valid_until <= now,
            )
        ).all()
        per_batch: dict[int, list[int]] = {}
        for r in rows:
            per_batch.setdefault(r.batch_id, []).append(r.id)
        for batch_id, ids in per_batch.items():
            for i in range(0, len(ids), 500):
                conn.execute(
                    update(Voucher)
                    .where(
                        Voucher.id.in_(ids[i : i + 500]), Voucher.state == VoucherState.NEW.value
                    )
                    .values(state=VoucherState.VOID.value, voided_at=now, void_reason="expired")
                )
            _audit(
                conn,
                actor,
                "batch.expire",
                f"batch:{batch_id}",
                before={"unsold": len(ids)},
                after={"expired": len(ids)},
                at=now,
            )
        return len(rows)
