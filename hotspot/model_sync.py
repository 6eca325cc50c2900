"""Gateway-side tables of the sync agent (``sync/``): the outbox, batches in flight, state.

The outbox is store-and-forward with coalescing: one row per *natural key* (a device-hour of
usage, a health sample, a month of sales of one package, the gateway's description), holding
the latest value to report. ``rev`` grows whenever the value changes; ``sent_rev`` is the
revision the collector has acknowledged, so a row is pending while ``rev > sent_rev``. A batch
(``sync_batch``) is the exact body sent under one idempotency key: it is stored before the
first attempt and re-sent byte for byte until acknowledged, so a retry is never counted twice.

No MAC address, URL or domain is ever written here: devices appear as keyed pseudonyms.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.dbtypes import str_enum
from hotspot.model_base import Base
from hotspot.timeutil import utcnow
from hotspot.wire import RecordKind


class SyncBatch(Base):
    """One request body (gzip) under one idempotency key, kept until the collector acks it."""

    __tablename__ = "sync_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)  # the idempotency key
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    records: Mapped[int] = mapped_column(Integer)
    raw_bytes: Mapped[int] = mapped_column(Integer)  # before compression
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))


class SyncOutbox(Base):
    """The latest value of one report record, and how much of it the collector has."""

    __tablename__ = "sync_outbox"
    __table_args__ = (
        Index("uq_sync_outbox_kind_key", "kind", "key", unique=True),
        Index(
            "ix_sync_outbox_pending",
            "id",
            sqlite_where=text("rev > sent_rev"),
            postgresql_where=text("rev > sent_rev"),
        ),
        Index("ix_sync_outbox_period", "period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[RecordKind] = mapped_column(str_enum(RecordKind, length=16))
    key: Mapped[str] = mapped_column(String(80))  # natural key within the kind
    payload: Mapped[str] = mapped_column(Text)  # the JSON record as sent
    rev: Mapped[int] = mapped_column(BigInteger)
    sent_rev: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    inflight_rev: Mapped[int | None] = mapped_column(BigInteger)  # rev in the batch in flight
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("sync_batch.id"), index=True)
    # The UTC hour (usage) or time (health) the record is about: retention and clean-up.
    period: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SyncState(Base):
    """Small named values of the agent: watermarks, last success, counters, keys."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
