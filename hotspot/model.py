"""The domain model shared by the gateway, the portal, the sync agent and the CLI.

Times are stored as naive UTC (SQLite has no time zones); ``hotspot.timeutil.utcnow`` is the
one source. The schema is created and changed only by the Alembic migrations in ``hotspot/migrations``.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotspot.dbtypes import str_enum

# Re-exported: both were defined here once, and callers still import them from here.
from hotspot.mac import normalize_mac as normalize_mac
from hotspot.model_base import Base as Base
from hotspot.model_base import UsageCounters

# Importing the models imports every table on Base (the console's and the sync agent's too),
# so that metadata, create_all and Alembic always see the whole schema.
from hotspot import model_operator, model_radius, model_summary, model_sync, model_uplink  # noqa: F401  isort: skip
from hotspot import model_announcement  # noqa: F401  isort: skip
from hotspot.timeutil import utcnow


class EndReason(enum.StrEnum):
    IDLE = "idle-timeout"
    SESSION = "session-timeout"
    QUOTA = "quota"
    KICK = "admin-kick"
    LOGOUT = "logout"
    BLOCKED = "blocked"
    REPLACED = "replaced"
    UNTRUSTED = "untrusted"  # taken off the trusted list


class Source(enum.StrEnum):
    FREE = "free"  # accepted the terms on the splash page
    VOUCHER = "voucher"
    ADMIN = "admin"  # allowed by an operator or the CLI
    RADIUS = "radius"  # an account accepted by the RADIUS server (hotspot/radius/)
    TRUSTED = "trusted"  # on the trusted list: let out by the gateway whenever it is seen


class Device(Base):
    """A client device, known by MAC. Blocking is per device."""

    __tablename__ = "device"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    hostname: Mapped[str | None] = mapped_column(String(64))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    blocked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    blocked_reason: Mapped[str | None] = mapped_column(String(200))

    sessions: Mapped[list[ClientSession]] = relationship(back_populates="device")


class TrustedDevice(Base):
    """A device that never sees the portal (the kantor desa PC, the puskesmas, a CCTV
    recorder): the gateway keeps a session for it on ``tier`` whenever it is on the LAN.
    ``tier`` is a configured tier or ``unlimited`` (gateway/engine.py: UNLIMITED_TIER)."""

    __tablename__ = "trusted_device"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    label: Mapped[str] = mapped_column(String(80))
    tier: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class ClientSession(Base):
    """One period of authorized access of one device at one address."""

    __tablename__ = "client_session"
    __table_args__ = (
        # At most one running session per device and per address: the database, not the
        # application, makes concurrent authorizations exactly-once.
        Index(
            "uq_session_active_mac",
            "mac",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "uq_session_active_ip",
            "ip",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_session_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac: Mapped[str] = mapped_column(ForeignKey("device.mac"), index=True)
    ip: Mapped[str] = mapped_column(String(15))
    tier: Mapped[str] = mapped_column(String(32))
    source: Mapped[Source] = mapped_column(str_enum(Source, length=16))
    # The tier's figures at authorization: a config change does not alter running sessions.
    down_kbps: Mapped[int] = mapped_column(Integer)
    up_kbps: Mapped[int] = mapped_column(Integer)
    idle_minutes: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_activity_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[EndReason | None] = mapped_column(str_enum(EndReason, length=32))
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    # A data cap of this session (a voucher's quota); None = only the tier's daily allowance.
    bytes_limit: Mapped[int | None] = mapped_column(BigInteger)
    # The voucher that paid for it, when one did (no foreign key: vouchers live in their own
    # module and may be purged before sessions are).
    voucher_id: Mapped[int | None] = mapped_column(Integer, index=True)

    device: Mapped[Device] = relationship(back_populates="sessions")

    @property
    def active(self) -> bool:
        return self.ended_at is None


class HourlyUsage(UsageCounters, Base):
    """Bytes and connected time of one device in one UTC hour: what usage reports are made of."""

    __tablename__ = "hourly_usage"
    __table_args__ = (Index("ix_hourly_usage_hour", "hour"),)

    mac: Mapped[str] = mapped_column(ForeignKey("device.mac"), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)  # UTC, :00:00


class DailyUsage(UsageCounters, Base):
    """Time and bytes one device used on one tier on one local day (fair use)."""

    __tablename__ = "daily_usage"

    mac: Mapped[str] = mapped_column(ForeignKey("device.mac"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)


# -- vouchers (hotspot/vouchers/ is the only writer) ----------------------------------------


class VoucherState(enum.StrEnum):
    NEW = "new"  # printed, not used yet
    ACTIVE = "active"  # first used; runs until expires_at (or its data is used up)
    MERGED = "merged"  # its remaining time and data were carried into another voucher (top-up)
    VOID = "void"  # withdrawn by an operator


class PackageSource(enum.StrEnum):
    CONFIG = "config"  # a [packages.NAME] table of the file (synced at start)
    CONSOLE = "console"  # made in the operator console


class Package(Base):
    """What a voucher buys: a tier for some hours (from first use), maybe a data quota.

    An online-time package gives ``online_minutes`` of online time (counted only while a
    device of the voucher is connected and active) within ``valid_days`` from first use; its
    ``hours`` is then that window (``valid_days`` × 24), so everything that reads ``hours``
    as "how long from first use at most" stays right."""

    __tablename__ = "package"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(40))
    price: Mapped[int] = mapped_column(Integer)  # Rupiah
    tier: Mapped[str] = mapped_column(String(32))
    hours: Mapped[int] = mapped_column(Integer)
    data_mb: Mapped[int | None] = mapped_column(Integer)  # None = no data quota
    online_minutes: Mapped[int | None] = mapped_column(Integer)  # None = wall-clock hours
    valid_days: Mapped[int | None] = mapped_column(Integer)  # with online_minutes
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    shelf_days: Mapped[int | None] = mapped_column(Integer)  # None = may wait forever
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("1"))
    # A device that comes back with a voucher of this package still running is let out
    # again without the portal (gateway/engine.py, "resumable").
    auto_resume: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("1"))
    source: Mapped[PackageSource] = mapped_column(
        str_enum(PackageSource, length=16), default=PackageSource.CONSOLE
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class VoucherBatch(Base):
    """Vouchers generated together. The package's terms are copied: a later change of the
    package does not alter vouchers already printed (or sold)."""

    __tablename__ = "voucher_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), index=True)
    package_name: Mapped[str] = mapped_column(String(32))
    price: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(32))
    hours: Mapped[int] = mapped_column(Integer)
    data_mb: Mapped[int | None] = mapped_column(Integer)
    online_minutes: Mapped[int | None] = mapped_column(Integer)  # see Package
    valid_days: Mapped[int | None] = mapped_column(Integer)
    devices: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    # Random per batch; with the secret key outside the database it re-derives the codes,
    # so a sheet can be printed again. Alone it reveals nothing.
    salt: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTime)  # first use before this
    note: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(64))


class Voucher(Base):
    """One code. Only a keyed hash of the code is stored (see hotspot.vouchers)."""

    __tablename__ = "voucher"
    __table_args__ = (
        Index("uq_voucher_batch_serial", "batch_id", "serial", unique=True),
        Index("ix_voucher_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("voucher_batch.id"))
    serial: Mapped[int] = mapped_column(Integer)  # 1.. within the batch, printed on the sheet
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[VoucherState] = mapped_column(
        str_enum(VoucherState, length=8), default=VoucherState.NEW
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sold_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Data this voucher may carry, set at first use (its own quota plus what a top-up brought
    # along); None = no quota.
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    # Online time (an online-time package): the seconds it may be online, set at first use
    # (its own minutes plus what a top-up brought along; None = an hours voucher), and the
    # seconds used, written by the gateway at each flush. Its validity end is expires_at.
    online_seconds_total: Mapped[int | None] = mapped_column(Integer)
    online_seconds_used: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    topup_of: Mapped[int | None] = mapped_column(Integer)  # the voucher it absorbed
    merged_into: Mapped[int | None] = mapped_column(Integer)  # the voucher that absorbed it
    voided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    void_reason: Mapped[str | None] = mapped_column(String(200))

    batch: Mapped[VoucherBatch] = relationship()


class VoucherDevice(Base):
    """A device (MAC) using a voucher; at most ``devices`` of them per voucher."""

    __tablename__ = "voucher_device"

    voucher_id: Mapped[int] = mapped_column(ForeignKey("voucher.id"), primary_key=True)
    mac: Mapped[str] = mapped_column(String(17), primary_key=True, index=True)
    bound_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The device identity (signed device cookie) that redeemed it on this MAC, if known: the
    # same phone under a new random MAC takes its place back at once.
    device_id: Mapped[str | None] = mapped_column(String(32))


class VoucherMove(Base):
    """A voucher that moved from one device to another (shown to the owner it left)."""

    __tablename__ = "voucher_move"
    __table_args__ = (Index("ix_voucher_move_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    from_mac: Mapped[str] = mapped_column(String(17), index=True)
    from_device: Mapped[str | None] = mapped_column(String(32), index=True)
    to_mac: Mapped[str] = mapped_column(String(17))
    # True: the owner's own device under a new MAC (its cookie came back); False: another
    # device took it after the owner had been away for the takeover time.
    same_device: Mapped[bool] = mapped_column(Boolean)


class RedeemFailure(Base):
    """One wrong voucher code: the sliding windows of the per-address and gateway-wide
    brakes count these rows (in the database, so they hold across gunicorn workers)."""

    __tablename__ = "redeem_failure"
    __table_args__ = (
        Index("ix_redeem_failure_at", "at"),
        Index("ix_redeem_failure_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(45))
    mac: Mapped[str] = mapped_column(String(17))


class DeviceIdentity(Base):
    """A device as its signed device cookie names it (a random id, not a MAC): the free
    allowance and voucher ownership follow it across MAC changes."""

    __tablename__ = "device_identity"
    __table_args__ = (Index("ix_device_identity_ip_day", "created_ip", "created_day"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_ip: Mapped[str] = mapped_column(String(45))
    created_day: Mapped[dt.date] = mapped_column(Date)  # local (village) day


class DeviceIdentityMac(Base):
    """A MAC seen under an identity. A MAC belongs to one identity for good: its usage cannot
    be moved away to make another identity's allowance fresh."""

    __tablename__ = "device_identity_mac"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    identity_id: Mapped[str] = mapped_column(ForeignKey("device_identity.id"), index=True)
    linked_at: Mapped[dt.datetime] = mapped_column(DateTime)


class RedeemAttempt(Base):
    """Failed voucher entries of one device in the current window (brute-force brake)."""

    __tablename__ = "redeem_attempt"

    client: Mapped[str] = mapped_column(String(17), primary_key=True)  # MAC (or IP)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
