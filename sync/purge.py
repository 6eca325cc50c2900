"""Retention: forget what is older than ``[privacy] retention_days`` on the gateway.

Deleted, oldest first, in small transactions (the gateway engine shares the SQLite file and
must never wait long): hourly and daily usage, ended sessions, delivered outbox rows, and
the uplink's ended outages, devices not seen since the cut-off that nothing refers to any
more (blocked devices stay: the block is the operator's decision), then what still names a
device: the MACs bound to vouchers that were over (expired, merged into another, withdrawn)
and not used since the cut-off, the MACs of device identities whose device is forgotten, and
identities left without a MAC or a voucher. The vouchers themselves stay: they are the sales
ledger, not personal data. Records not yet delivered to the collector are kept whatever
their age (they hold pseudonyms only), so nothing is lost to a long outage.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Delete, Engine, Row, Select, and_, delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from hotspot.config import Config
from hotspot.model import (
    ClientSession,
    DailyUsage,
    Device,
    DeviceIdentity,
    DeviceIdentityMac,
    HourlyUsage,
    Voucher,
    VoucherDevice,
    VoucherState,
)
from hotspot.model_sync import SyncOutbox
from hotspot.model_uplink import UplinkOutage
from hotspot.timeutil import iso, local_day, utcnow

log = logging.getLogger(__name__)
CHUNK = 500


SelectIds = Select[*tuple[Any, ...]]  # the ids (keys) of rows to forget
DeleteIds = Callable[[list[Row[*tuple[Any, ...]]]], Delete]  # deletes the rows of a chunk of ids
# One retention step: the table's name (the report's key), its old rows' ids, their delete.
Step = tuple[str, SelectIds, DeleteIds]


def _chunked(db: Engine, select_ids: SelectIds, delete_ids: DeleteIds) -> int:
    total = 0
    while True:
        with Session(db) as s, s.begin():
            ids = list(s.execute(select_ids.limit(CHUNK)).all())
            if not ids:
                return total
            s.execute(delete_ids(ids))
            total += len(ids)
        if len(ids) < CHUNK:
            return total


def _usage_before(
    model: type[HourlyUsage] | type[DailyUsage],
    period: InstrumentedAttribute[Any],
    cutoff: dt.date,
) -> Step:
    """The step for a usage table keyed by (device, ``period``): its rows before ``cutoff``.
    The delete repeats the cut-off: a chunk's macs and periods, crossed, may name newer rows."""
    return (
        model.__tablename__,
        select(model.mac, period).where(period < cutoff),
        lambda ids: delete(model).where(
            period < cutoff,
            model.mac.in_({m for m, _ in ids}),
            period.in_({p for _, p in ids}),
        ),
    )


def purge(
    config: Config,
    db: Engine,
    *,
    now: dt.datetime | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    now = now or clock()
    cutoff = now - dt.timedelta(days=config.privacy.retention_days)
    day_cutoff = local_day(cutoff, config.village.tz)
    out: dict[str, Any] = {"cutoff": iso(cutoff)}
    steps = [
        _usage_before(HourlyUsage, HourlyUsage.hour, cutoff),
        _usage_before(DailyUsage, DailyUsage.day, day_cutoff),
        (
            "client_session",
            select(ClientSession.id).where(
                ClientSession.ended_at.is_not(None), ClientSession.ended_at < cutoff
            ),
            lambda ids: delete(ClientSession).where(ClientSession.id.in_([i for (i,) in ids])),
        ),
        (
            "sync_outbox",
            select(SyncOutbox.id).where(
                SyncOutbox.period < cutoff,
                SyncOutbox.batch_id.is_(None),
                SyncOutbox.rev <= SyncOutbox.sent_rev,
            ),
            lambda ids: delete(SyncOutbox).where(SyncOutbox.id.in_([i for (i,) in ids])),
        ),
        (
            "uplink_outage",
            select(UplinkOutage.id).where(
                UplinkOutage.ended_at.is_not(None), UplinkOutage.ended_at < cutoff
            ),
            lambda ids: delete(UplinkOutage).where(UplinkOutage.id.in_([i for (i,) in ids])),
        ),
        (
            "device",
            select(Device.mac).where(
                Device.last_seen < cutoff,
                Device.blocked.is_(False),
                ~exists().where(ClientSession.mac == Device.mac),
                ~exists().where(HourlyUsage.mac == Device.mac),
                ~exists().where(DailyUsage.mac == Device.mac),
            ),
            lambda ids: delete(Device).where(Device.mac.in_([m for (m,) in ids])),
        ),
        *_device_links(cutoff),
    ]
    for name, sel, dele in steps:
        try:
            out[name] = _chunked(db, sel, dele)
        except IntegrityError as exc:  # something else still refers to these rows
            out[name] = f"skipped: {str(exc.orig)[:80]}"
            log.warning("retention: %s kept: %s", name, exc.orig)
    log.info("retention purge before %s: %s", out["cutoff"], out)
    return out


def _device_links(cutoff: dt.datetime) -> list[Step]:
    """The steps that forget which MAC used which voucher and which MACs made one device,
    once that is older than ``cutoff`` (after the devices' step: a device forgotten there
    lets its identity's MAC go here)."""
    voucher_over = or_(
        Voucher.state.in_([VoucherState.MERGED, VoucherState.VOID]),
        and_(Voucher.expires_at.is_not(None), Voucher.expires_at < cutoff),
    )
    bound_before = and_(
        VoucherDevice.last_seen_at < cutoff,
        exists().where(Voucher.id == VoucherDevice.voucher_id, voucher_over),
    )
    return [
        (
            "voucher_device",
            select(VoucherDevice.voucher_id, VoucherDevice.mac).where(bound_before),
            # The chunk's vouchers and MACs, crossed, may name other bindings: the delete
            # repeats the condition.
            lambda ids: delete(VoucherDevice).where(
                bound_before,
                VoucherDevice.voucher_id.in_({v for v, _ in ids}),
                VoucherDevice.mac.in_({m for _, m in ids}),
            ),
        ),
        (
            "device_identity_mac",
            select(DeviceIdentityMac.mac).where(
                DeviceIdentityMac.linked_at < cutoff,
                ~exists().where(Device.mac == DeviceIdentityMac.mac),
                ~exists().where(VoucherDevice.mac == DeviceIdentityMac.mac),
            ),
            lambda ids: delete(DeviceIdentityMac).where(
                DeviceIdentityMac.mac.in_([m for (m,) in ids])
            ),
        ),
        (
            "device_identity",
            select(DeviceIdentity.id).where(
                DeviceIdentity.created_at < cutoff,
                ~exists().where(DeviceIdentityMac.identity_id == DeviceIdentity.id),
                ~exists().where(VoucherDevice.device_id == DeviceIdentity.id),
            ),
            lambda ids: delete(DeviceIdentity).where(DeviceIdentity.id.in_([i for (i,) in ids])),
        ),
    ]
