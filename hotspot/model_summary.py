"""Tables of the daily summary to the BUMDes head (issue #13, item 7; ``sync/summary.py``).

``daily_summary`` is the queue *and* the durable record of which days were summarised: a
row is made once, with the exact text to send, and kept after it is sent. ``scheduled_day``
is unique, so the scheduled summary of a village day exists at most once whatever the clock
or the service does (restarts, kill -9, a clock that jumps back); a manual one (``hotspot
summary send-now``) has none. ``uplink_event`` records when the summary service saw the
internet go and come back (changes only), for the day's "internet outages" line.

No MAC address or villager data is written here: the text holds counts and kasir names.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.dbtypes import str_enum
from hotspot.model_base import Base
from hotspot.timeutil import utcnow


class SummaryState(enum.StrEnum):
    PENDING = "pending"  # to send (at or after next_attempt_at)
    SENDING = "sending"  # a request was (maybe) on its way when the sender stopped
    SENT = "sent"  # Telegram answered 200 with "ok": true
    FAILED = "failed"  # refused for good (wrong token, chat not found): kept with the error


class DailySummary(Base):
    __tablename__ = "daily_summary"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)  # the village day it reports
    scheduled_day: Mapped[dt.date | None] = mapped_column(Date, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[SummaryState] = mapped_column(
        str_enum(SummaryState, length=16), default=SummaryState.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Which bot and chat a refusal came under (a hash, never the token): when the admin
    # changes either, the refused summaries are tried once more.
    failed_config: Mapped[str | None] = mapped_column(String(16))


class UplinkEvent(Base):
    __tablename__ = "uplink_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
