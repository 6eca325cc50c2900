"""The collector's tables (its own declarative Base and migrations: collector/migrations).

Times are naive UTC. ``usage_hourly`` holds each device-hour as the largest totals any
report gave (reports carry absolute totals, so a retried or late report never adds twice);
``usage_daily`` is its roll-up per local day (``[collector] timezone``), kept in step by the
same transaction. ``village_daily`` rolls those up per village and day (distinct devices,
device-seconds, bytes): the dashboard and the API's ``/daily`` read it, and it outlives the
per-device rows (``retention_days`` < ``rollup_retention_days``: collector.maintenance).

On PostgreSQL ``usage_hourly``, ``usage_daily`` and ``health_sample`` are partitioned by month
(migration c0003; the partitions are not models: collector.maintenance creates and drops them).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotspot.model_base import UsageCounters
from hotspot.timeutil import utcnow


class Base(DeclarativeBase):
    pass


class Gateway(Base):
    """A registered village gateway and what it last told us about itself."""

    __tablename__ = "gateway"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    secret: Mapped[str] = mapped_column(String(256))  # checks the HMAC of its requests
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    village: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32))
    info_rev: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    last_health_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # newest sample
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UsageHourly(UsageCounters, Base):
    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_period", "period_start"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    client: Mapped[str] = mapped_column(String(16), primary_key=True)  # the gateway's pseudonym
    period_start: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    # after the counters, as the migration made it
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, sort_order=1)


class UsageDaily(UsageCounters, Base):
    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_day", "day"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    client: Mapped[str] = mapped_column(String(16), primary_key=True)


class VillageDaily(Base):
    """One village's local day: how many distinct devices were online, their seconds online
    and bytes (a roll-up of ``usage_daily``, moved by exactly the difference at ingest)."""

    __tablename__ = "village_daily"
    __table_args__ = (Index("ix_village_daily_day", "day"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    devices: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[int] = mapped_column(BigInteger)
    bytes_down: Mapped[int] = mapped_column(BigInteger)
    bytes_up: Mapped[int] = mapped_column(BigInteger)


class HealthSample(Base):
    __tablename__ = "health_sample"

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    sampled_at: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    cpu_pct: Mapped[float] = mapped_column(Float)
    load1: Mapped[float] = mapped_column(Float)
    load5: Mapped[float] = mapped_column(Float)
    load15: Mapped[float] = mapped_column(Float)
    mem_pct: Mapped[float] = mapped_column(Float)
    disk_pct: Mapped[float] = mapped_column(Float)
    disk_free_mb: Mapped[int] = mapped_column(BigInteger)
    temp_c: Mapped[float | None] = mapped_column(Float)
    uptime_s: Mapped[int] = mapped_column(BigInteger)
    uplink_ok: Mapped[bool | None] = mapped_column(Boolean)
    uplink_ms: Mapped[float | None] = mapped_column(Float)
    clients_online: Mapped[int] = mapped_column(Integer)
    backlog: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SalesMonthly(Base):
    """What a village's BUMDes sold in one local month of one package (latest report wins)."""

    __tablename__ = "sales_monthly"
    __table_args__ = (Index("ix_sales_monthly_month", "month"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    package: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    rupiah: Mapped[int] = mapped_column(BigInteger)
    rev: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UplinkOutage(Base):
    """One window of a village's uplink being down, as its gateway saw it (``ended_at``
    None while it lasts; the gateway reports it again when it ends: latest revision wins).
    ``cause``: ``link`` (the WAN link itself) or ``unreachable`` (up, but black-holing)."""

    __tablename__ = "uplink_outage"

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cause: Mapped[str] = mapped_column(String(16))
    rev: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class IngestBatch(Base):
    """Idempotency keys already applied: the same batch again is acknowledged, not counted."""

    __tablename__ = "ingest_batch"
    __table_args__ = (Index("ix_ingest_batch_received", "received_at"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    records: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class IngestNonce(Base):
    """Signatures seen within the replay window: the same request twice is refused."""

    __tablename__ = "ingest_nonce"
    __table_args__ = (Index("ix_ingest_nonce_seen", "seen_at"),)

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    signature: Mapped[str] = mapped_column(String(67), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ApiToken(Base):
    """A bearer token of the pull API (only its SHA-256 is kept)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
