"""Batches of vouchers: making them (the only time codes are handed out in clear), printing
their codes again from the key, and listing them with their vouchers' states."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotspot.audit import Actor
from hotspot.audit import record as _audit
from hotspot.audit import write as _write
from hotspot.errors import ErrorCode, HotspotError, NotFound, UsageError
from hotspot.model import Package, Voucher, VoucherBatch, VoucherState
from hotspot.model_operator import VoucherSale
from hotspot.timeutil import utcnow
from hotspot.vouchers.codes import code_hash, derive_code, format_code

log = logging.getLogger(__name__)

MAX_BATCH = 5000


@dataclass(frozen=True)
class Batch:
    id: int
    package: str
    count: int
    codes: list[str]  # formatted, serial 1.. in order
    valid_until: dt.datetime | None


def create_batch(
    engine: Engine,
    key: bytes,
    package: str | int,
    count: int,
    *,
    note: str | None = None,
    created_by: str | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Batch:
    """Generate ``count`` vouchers of ``package`` (name or id) in one transaction and return
    their codes — the only time they are handed out in clear (print them now, or again later
    with :func:`batch_codes`)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
        raise UsageError(f"count must be a whole number from 1 to {MAX_BATCH}")
    now = clock()
    for _attempt in range(3):
        salt = secrets.token_hex(16)
        codes = [derive_code(key, salt, serial) for serial in range(1, count + 1)]
        if len(set(codes)) != count:  # pragma: no cover - p ≈ count²/2**50
            continue
        try:
            with Session(engine) as db, db.begin():
                q = select(Package)
                q = (
                    q.where(Package.id == package)
                    if isinstance(package, int)
                    else q.where(Package.name == package)
                )
                pkg = db.scalar(q)
                if pkg is None:
                    raise NotFound(f"no package {package!r}")
                valid_until = now + dt.timedelta(days=pkg.shelf_days) if pkg.shelf_days else None
                batch = VoucherBatch(
                    package_id=pkg.id,
                    package_name=pkg.name,
                    price=pkg.price,
                    tier=pkg.tier,
                    hours=pkg.hours,
                    online_minutes=pkg.online_minutes,
                    valid_days=pkg.valid_days,
                    data_mb=pkg.data_mb,
                    devices=pkg.devices,
                    count=count,
                    salt=salt,
                    created_at=now,
                    valid_until=valid_until,
                    note=(note or None) and note[:200],
                    created_by=(created_by or None) and created_by[:64],
                )
                db.add(batch)
                db.flush()
                db.execute(
                    insert(Voucher),
                    [
                        dict(
                            batch_id=batch.id,
                            serial=i,
                            code_hash=code_hash(key, code),
                            state=VoucherState.NEW.value,
                            created_at=now,
                            valid_until=valid_until,
                        )
                        for i, code in enumerate(codes, start=1)
                    ],
                )
                batch_id, name = batch.id, pkg.name
        except IntegrityError:  # pragma: no cover - a code collided with an older batch's
            continue
        log.info("batch %d: %d vouchers of %s", batch_id, count, name)
        return Batch(batch_id, name, count, [format_code(c) for c in codes], valid_until)
    raise HotspotError("could not generate unique codes; try again")  # pragma: no cover


def batch_codes(
    engine: Engine,
    key: bytes,
    batch_id: int,
    states: Iterable[str] | None = (VoucherState.NEW.value,),
) -> list[tuple[int, str]]:
    """(serial, code) of a batch's vouchers again — unused ones by default — for reprinting.
    Needs the key: a database alone cannot do this."""
    states = list(states) if states is not None else None
    with engine.connect() as conn:
        batch = conn.execute(select(VoucherBatch).where(VoucherBatch.id == batch_id)).first()
        if batch is None:
            raise NotFound(f"no batch {batch_id}")
        q = select(Voucher.serial, Voucher.code_hash).where(Voucher.batch_id == batch_id)
        if states is not None:
            q = q.where(Voucher.state.in_(states))
        rows = conn.execute(q.order_by(Voucher.serial)).all()
    out = []
    for serial, stored in rows:
        code = derive_code(key, batch.salt, serial)
        if not hmac.compare_digest(code_hash(key, code), stored):
            raise HotspotError(
                f"batch {batch_id}: the voucher key is not the one it was made with",
                code=ErrorCode.BAD_VOUCHER_KEY,
            )
        out.append((serial, format_code(code)))
    return out


def create_batch_audited(
    engine: Engine,
    key: bytes,
    package: str | int,
    count: int,
    *,
    actor: Actor,
    note: str | None = None,
    max_count: int = MAX_BATCH,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Batch:
    """:func:`create_batch` with a cap (the console's and the CLI's) and an audit entry."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= max_count:
        raise UsageError(f"count must be a whole number from 1 to {max_count}")
    batch = create_batch(engine, key, package, count, note=note, created_by=actor.name, clock=clock)
    with _write(engine) as conn:
        price = conn.execute(select(VoucherBatch.price).where(VoucherBatch.id == batch.id)).scalar()
        _audit(
            conn,
            actor,
            "batch.create",
            f"batch:{batch.id}",
            after={
                "package": batch.package,
                "count": count,
                "price_each": price,
                "note": note or None,
            },
            at=clock(),
        )
    return batch


def list_batches(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Batches, newest first, with how many of their vouchers are in which state."""
    with Session(engine) as conn:
        rows = conn.execute(
            select(VoucherBatch, Package.title)
            .join(Package, VoucherBatch.package_id == Package.id)
            .order_by(VoucherBatch.id.desc())
            .limit(limit)
        ).all()
        counts: dict[int, dict[str, int]] = {}
        if rows:
            ids = [r.VoucherBatch.id for r in rows]
            q = (
                select(Voucher.batch_id, Voucher.state, Voucher.sold_at.is_not(None), func.count())
                .where(Voucher.batch_id.in_(ids))
                .group_by(Voucher.batch_id, Voucher.state, Voucher.sold_at.is_not(None))
            )
            for batch_id, st, sold, n in conn.execute(q):
                c = counts.setdefault(batch_id, {"new": 0, "sold": 0, "used": 0, "void": 0})
                if st == VoucherState.VOID.value:
                    c["void"] += n
                elif st == VoucherState.NEW.value:
                    c["sold" if sold else "new"] += n
                else:
                    c["used"] += n
    out = []
    for r in rows:
        b = r.VoucherBatch
        out.append(
            {
                "id": b.id,
                "package": b.package_name,
                "title": r.title,
                "price": b.price,
                "tier": b.tier,
                "hours": b.hours,
                "online_minutes": b.online_minutes,
                "valid_days": b.valid_days,
                "data_mb": b.data_mb,
                "devices": b.devices,
                "count": b.count,
                "created_at": b.created_at,
                "created_by": b.created_by,
                "note": b.note,
                "valid_until": b.valid_until,
                "states": counts.get(b.id, {"new": 0, "sold": 0, "used": 0, "void": 0}),
            }
        )
    return out


def batch_info(engine: Engine, batch_id: int) -> dict[str, Any]:
    for b in batches_by_id(engine, [batch_id]):
        return b
    raise NotFound(f"no batch {batch_id}")


def batches_by_id(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    return [b for b in list_batches(engine, limit=100_000) if b["id"] in set(ids)]


def batch_vouchers(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """The vouchers of a batch (no codes: the database has none) with sale and use."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Voucher.id,
                Voucher.serial,
                Voucher.state,
                Voucher.sold_at,
                Voucher.first_used_at,
                Voucher.expires_at,
                Voucher.valid_until,
                Voucher.void_reason,
                VoucherSale.operator,
            )
            .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
            .where(Voucher.batch_id == batch_id)
            .order_by(Voucher.serial)
        ).all()
    return [dict(r._mapping) for r in rows]
