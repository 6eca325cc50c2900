"""The declarative base of the device's database: every table of ``hotspot.model``,
``hotspot.model_sync`` and ``hotspot.model_operator`` hangs on it; and the usage counters
that the device's and the collector's usage tables share.

A module of its own so that those three import it and not each other (``hotspot.model``
imports the other two, so that importing it gives the whole schema).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UsageCounters:
    """Connected seconds and bytes each way: what every usage row counts, on the device
    (hourly, daily) and at the collector (the same rows, reported)."""

    seconds: Mapped[int] = mapped_column(Integer, default=0)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
