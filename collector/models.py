"""The collector's tables (its own declarative Base and migrations: collector/migrations).

Times are naive UTC. ``usage_hourly`` holds each device-hour as the largest totals any
report gave (reports carry absolute totals, so a retried or late report never adds twice);
``usage_daily`` is its roll-up per local day (``[collector] timezone``), kept in step by the
same transaction. ``village_daily`` rolls those up per village and day (distinct devices,
device-seconds, bytes): the dashboard and the API's ``/daily`` read it, and it outlives the
per-device rows (``retention_days`` < ``rollup_retention_days``: collector.maintenance).

On PostgreSQL ``usage_hourly``, ``usage_daily`` and ``health_sample`` are partitioned by month
(migration c0006; the partitions are not models: collector.maintenance creates and drops them).
"""

from __future__ import annotations

import datetime as dt
import enum

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
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotspot.dbtypes import str_enum
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
    # Where the village is, as the province registers it (``collector gateways set``): the
    # dashboard's groups and filters, and its map.
    kabupaten: Mapped[str | None] = mapped_column(String(100))
    kecamatan: Mapped[str | None] = mapped_column(String(100))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # The province's policy (issue #15): the version the gateway last reported running (its
    # newest health sample); its kecamatan (above) picks the kecamatan scope.
    policy_version: Mapped[int | None] = mapped_column(BigInteger)


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
    throttled: Mapped[int | None] = mapped_column(BigInteger)  # a Pi's get_throttled bits
    software_version: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The gateway's clock (None from gateways older than these fields): whether the kernel
    # said synchronised, and from where (ntp, collector, none: hotspot.wire.CLOCK_SOURCES).
    clock_synced: Mapped[bool | None] = mapped_column(Boolean)
    clock_source: Mapped[str | None] = mapped_column(String(16))
    policy_version: Mapped[int | None] = mapped_column(BigInteger)
    # The HTTPS certificate the gateway has installed (None: none, or a gateway older than
    # the fields); the village page shows the newest beside the one issued.
    cert_name: Mapped[str | None] = mapped_column(String(253))
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(DateTime)


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


class PolicyScope(Base):
    """The policy fields published for one scope (``province``, ``kecamatan:<name>``,
    ``gateway:<id>``; hotspot/policy.py), as the last ``policy publish`` gave them."""

    __tablename__ = "policy_scope"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    fields: Mapped[str] = mapped_column(Text)  # JSON, validated
    version: Mapped[int] = mapped_column(BigInteger)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PolicyDocument(Base):
    """The signed, merged policy of one gateway, as served to it (``GET /policy/v1/document``).
    Versions only grow: every publish numbers its documents above every earlier one."""

    __tablename__ = "policy_document"

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    envelope: Mapped[str] = mapped_column(Text)  # {"document", "signature", "key_id"}
    etag: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


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


class AlertKind(enum.StrEnum):
    """What an alert is about (collector.alerts has the rules)."""

    NOT_REPORTING = "not_reporting"
    DISK = "disk"
    TEMPERATURE = "temperature"
    UNDERVOLTAGE = "undervoltage"
    THROTTLED = "throttled"
    UPLINK_DOWN = "uplink_down"
    UPLINK_LOSSY = "uplink_lossy"
    CLOCK = "clock"


class Alert(Base):
    """A condition of one village: pending while it has not lasted long enough to raise
    (``raised_at`` None), open once raised, closed once cleared. At most one alert per
    village and kind is not closed (the partial unique index): two evaluators cannot
    raise it twice."""

    __tablename__ = "alert"
    __table_args__ = (
        Index(
            "uq_alert_active",
            "gateway_id",
            "kind",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
        Index("ix_alert_raised", "raised_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"))
    kind: Mapped[AlertKind] = mapped_column(str_enum(AlertKind, length=32))
    critical: Mapped[bool] = mapped_column(Boolean)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime)  # the condition began
    raised_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    clearing_since: Mapped[dt.datetime | None] = mapped_column(DateTime)  # condition gone
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    detail: Mapped[str] = mapped_column(String(200))


class NotifyEvent(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


class NotifyChannel(enum.StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class AlertNotification(Base):
    """The outbox of alert messages: one row per event and channel, written in the same
    transaction as the alert's change, marked sent only after the server took it. A
    non-critical one made in quiet hours waits (``hold_until``) and goes out in a digest."""

    __tablename__ = "alert_notification"
    __table_args__ = (Index("ix_alert_notification_due", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"))
    event: Mapped[NotifyEvent] = mapped_column(str_enum(NotifyEvent, length=16))
    channel: Mapped[NotifyChannel] = mapped_column(str_enum(NotifyChannel, length=16))
    critical: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    hold_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))


class CertState(enum.StrEnum):
    """Where a gateway's certificate request stands (collector/certs.py)."""

    PENDING = "pending"  # waiting for the ACME worker
    WORKING = "working"  # claimed by one worker (``claimed_at``)
    ISSUED = "issued"  # ``chain`` holds the certificate for ``key_fingerprint``
    FAILED = "failed"  # the last try failed (``error``); tried again at ``next_attempt_at``


class GatewayCertificate(Base):
    """A gateway's certificate for ``<gateway-id>.<zone>`` (issue #15, item 4): its CSR as
    sent, and the chain the ACME CA issued for it. One row per gateway: a new CSR (a new
    key, a renewal) replaces the request; the chain in force stays until the new one is
    issued."""

    __tablename__ = "gateway_certificate"

    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateway.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(253))
    csr: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str] = mapped_column(String(64))  # the CSR's public key
    state: Mapped[CertState] = mapped_column(str_enum(CertState, length=16))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(String(300))
    chain: Mapped[str | None] = mapped_column(Text)  # PEM, leaf first
    chain_fingerprint: Mapped[str | None] = mapped_column(String(64))  # its key's
    etag: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    not_after: Mapped[dt.datetime | None] = mapped_column(DateTime)
