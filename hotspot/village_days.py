"""The village's calendar: days and months in ``village.timezone`` as naive-UTC ranges (how
the database stores moments), used by the sales ledger and the usage per day."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hotspot.timeutil import naive_utc


def day_bounds(
    first: dt.date, last: dt.date, tz: zoneinfo.ZoneInfo
) -> tuple[dt.datetime, dt.datetime]:
    """Local days ``first``..``last`` (inclusive) as a naive-UTC half-open range."""
    lo = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return naive_utc(lo), naive_utc(hi)


def month_bounds(month: str, tz: zoneinfo.ZoneInfo) -> tuple[dt.date, dt.date]:
    """``2026-11`` → (1 Nov, 30 Nov). ValueError for anything else."""
    try:
        year, mon = month.split("-")
        first = dt.date(int(year), int(mon), 1)
    except (ValueError, AttributeError):
        raise ValueError(f"not a month like 2026-11: {month!r}") from None
    if len(year) != 4 or len(mon) != 2:
        raise ValueError(f"not a month like 2026-11: {month!r}")
    nxt = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)
