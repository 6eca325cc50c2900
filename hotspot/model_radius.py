"""The gateway's RADIUS tables (issue #16, docs/radius.md).

* ``radius_session`` — what a RADIUS session carries beside its ``client_session``: the
  account, the Acct-Session-Id, the Class to echo, when its next Interim-Update is due.
* ``radius_accounting`` — the accounting queue: every Start, Interim-Update and Stop record,
  written in the same transaction as the session change it reports, sent in ``id`` order and
  deleted when the server has acknowledged it. While the uplink is down for days it grows;
  nothing is lost across a restart or a power cut (short of the last commits, like usage).
* ``radius_login_cache`` — recent successful logins, for ``[radius] offline = "cached"``:
  a keyed hash of name and password (never the password), the limits the server granted and
  until when they may be used.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.model_base import Base


class RadiusSession(Base):
    __tablename__ = "radius_session"

    session_id: Mapped[int] = mapped_column(ForeignKey("client_session.id"), primary_key=True)
    acct_session_id: Mapped[str] = mapped_column(String(32), unique=True)
    username: Mapped[str] = mapped_column(String(253))
    calling_station: Mapped[str] = mapped_column(String(64))
    classes: Mapped[str] = mapped_column(Text, default="")  # hex values, comma-separated
    interim_seconds: Mapped[int] = mapped_column(Integer)
    next_interim_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)  # from the login cache


class RadiusAccounting(Base):
    __tablename__ = "radius_accounting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    acct_session_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[int] = mapped_column(Integer)  # Acct-Status-Type
    attributes: Mapped[str] = mapped_column(Text)  # JSON: attribute name → value
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))


class RadiusLoginCache(Base):
    __tablename__ = "radius_login_cache"
    __table_args__ = (Index("ix_radius_login_cache_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC of name and password
    username: Mapped[str] = mapped_column(String(253))
    grant: Mapped[str] = mapped_column(Text)  # JSON of the Access-Accept's limits
    cached_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
