"""Usage from the gateway's hourly usage rows (what the engine flushed): per village day (the
console's "devices and traffic today" and its devices-per-day chart), and hour by hour (the
gateway's own usage API)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.model import HourlyUsage
from hotspot.timeutil import local_day, naive_utc
from hotspot.village_days import day_bounds


def usage_by_day(
    engine: Engine, config: Config, first: dt.date, last: dt.date
) -> list[dict[str, Any]]:
    """Devices and bytes per local day, from the hourly usage (what the gateway flushed)."""
    tz = config.village.tz
    lo, hi = day_bounds(first, last, tz)
    q = select(
        HourlyUsage.mac, HourlyUsage.hour, HourlyUsage.bytes_down, HourlyUsage.bytes_up
    ).where(HourlyUsage.hour >= lo, HourlyUsage.hour < hi)
    macs: dict[dt.date, set[str]] = defaultdict(set)
    traffic: dict[dt.date, int] = defaultdict(int)
    with engine.connect() as conn:
        for mac, hour, down, up in conn.execute(q):
            d = local_day(naive_utc(hour), tz)  # some SQLite paths hand back text
            macs[d].add(mac)
            traffic[d] += int(down or 0) + int(up or 0)
    out = []
    d = first
    while d <= last:
        out.append({"day": d, "devices": len(macs.get(d, ())), "bytes": traffic.get(d, 0)})
        d += dt.timedelta(days=1)
    return out


def hourly_query(
    lo: dt.datetime | None, hi: dt.datetime | None
) -> Select[str, dt.datetime, int, int, int]:
    """The hourly rows ``(mac, hour, seconds, bytes_down, bytes_up)`` of hours ``lo`` ≤ hour
    < ``hi`` (each bound None = open), in no order: the usage API's pages and the sync
    agent's usage records read the same rows."""
    q = select(
        HourlyUsage.mac,
        HourlyUsage.hour,
        HourlyUsage.seconds,
        HourlyUsage.bytes_down,
        HourlyUsage.bytes_up,
    )
    if lo is not None:
        q = q.where(HourlyUsage.hour >= lo)
    if hi is not None:
        q = q.where(HourlyUsage.hour < hi)
    return q


def hourly_rows(
    engine: Engine,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    start: dt.datetime | None,
    limit: int,
) -> list[Any]:
    """``(mac, hour, seconds, bytes_down, bytes_up)`` rows of hours ``lo`` ≤ hour < ``hi``
    and from ``start`` on (each bound None = open), oldest first, at most ``limit``."""
    q = hourly_query(lo, hi).order_by(HourlyUsage.hour)
    if start is not None:
        q = q.where(HourlyUsage.hour >= start)
    with Session(engine) as s:
        return list(s.execute(q.limit(limit)).all())
