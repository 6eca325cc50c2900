"""Announcements the BUMDes enters in the console (issue #15, item 3; ``hotspot/announcements.py``).

One row per notice: its text in Indonesian (English optional) and the moments it starts and
ends showing, naive UTC like every time in the database (the console takes them in village
time). The province's announcements do not live here: they come with its signed policy.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.model_base import Base

# A notice is a line or two on a phone's screen, not an article.
MAX_TEXT = 280


class Announcement(Base):
    __tablename__ = "announcement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text_id: Mapped[str] = mapped_column(String(MAX_TEXT))
    text_en: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
