"""Looking a voucher up: by its code (the console, the CLI), its state and devices, the
console's detail (batch terms, sale, devices, data used), and the package names of running
vouchers (the console's live sessions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from hotspot.errors import NotFound
from hotspot.model import ClientSession, Voucher, VoucherBatch, VoucherDevice
from hotspot.model_operator import VoucherSale
from hotspot.vouchers.codes import code_hash, normalize_code


def voucher_macs(conn: Connection, voucher_id: int) -> list[str]:
    """The MACs bound to a voucher, first bound first."""
    return [
        m
        for (m,) in conn.execute(
            select(VoucherDevice.mac)
            .where(VoucherDevice.voucher_id == voucher_id)
            .order_by(VoucherDevice.bound_at)
        )
    ]


def recorded_bytes(conn: Connection, voucher_id: int) -> int:
    """Bytes a voucher's sessions used, ended and running, as far as the database knows (the
    engine flushes running sessions' counters now and then)."""
    used = conn.execute(
        select(func.coalesce(func.sum(ClientSession.bytes_down + ClientSession.bytes_up), 0)).where(
            ClientSession.voucher_id == voucher_id
        )
    ).scalar()
    return int(used or 0)


def voucher_state(engine: Engine, voucher_id: int) -> dict[str, Any]:
    """A voucher's state and devices (for the console and tests)."""
    with engine.connect() as conn:
        v = conn.execute(select(Voucher).where(Voucher.id == voucher_id)).first()
        if v is None:
            raise NotFound(f"no voucher {voucher_id}")
        macs = voucher_macs(conn, voucher_id)
    return {
        "id": v.id,
        "batch_id": v.batch_id,
        "serial": v.serial,
        "state": v.state,
        "first_used_at": v.first_used_at,
        "expires_at": v.expires_at,
        "bytes_total": v.bytes_total,
        "topup_of": v.topup_of,
        "merged_into": v.merged_into,
        "devices": macs,
    }


def find_voucher(engine: Engine, key: bytes, code: str) -> int | None:
    """The id of the voucher with this code (the console's lookup), or None."""
    bare = normalize_code(code)
    if bare is None:
        return None
    with engine.connect() as conn:
        return conn.execute(
            select(Voucher.id).where(Voucher.code_hash == code_hash(key, bare))
        ).scalar()


def voucher_detail(engine: Engine, voucher_id: int) -> dict[str, Any]:
    """A voucher with its batch's terms, its sale and its devices (the console's lookup)."""
    with engine.connect() as conn:
        r = conn.execute(
            select(
                Voucher.id,
                Voucher.serial,
                Voucher.batch_id,
                Voucher.state,
                Voucher.sold_at,
                Voucher.first_used_at,
                Voucher.expires_at,
                Voucher.valid_until,
                Voucher.bytes_total,
                Voucher.online_seconds_total,
                Voucher.online_seconds_used,
                Voucher.void_reason,
                Voucher.merged_into,
                VoucherBatch.package_name,
                VoucherBatch.price,
                VoucherBatch.hours,
                VoucherBatch.online_minutes,
                VoucherBatch.valid_days,
                VoucherBatch.data_mb,
                VoucherBatch.devices.label("devices_limit"),
                VoucherSale.operator.label("sold_by"),
            )
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
            .where(Voucher.id == voucher_id)
        ).first()
        if r is None:
            raise NotFound(f"no voucher {voucher_id}")
        macs = voucher_macs(conn, voucher_id)
        used = recorded_bytes(conn, voucher_id)
    return dict(r._mapping, devices=macs, bytes_used=used)


def package_names(engine: Engine, voucher_ids: Iterable[int]) -> dict[int, str]:
    """``{voucher id: its package's name}`` for the given vouchers (unknown ids are left out)."""
    ids = list(voucher_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        return {
            vid: name
            for vid, name in conn.execute(
                select(Voucher.id, VoucherBatch.package_name)
                .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
                .where(Voucher.id.in_(ids))
            )
        }
