"""Moments in time, the one way the whole product handles them.

Inside the product a moment is a *naive UTC* ``datetime``: SQLite has no time zones, so every
stored time is naive and means UTC. On the outside (control socket, reports, APIs, JSON) it is
ISO 8601 with a ``Z``, to the second: ``2026-11-28T03:00:00Z``. A village's wall clock is
only for people (pages, sales days), computed at the edge with :func:`local_time`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import overload


def utcnow() -> dt.datetime:
    """Now, as naive UTC (the default of every time column)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@overload
def iso(ts: dt.datetime, *, exact: bool = False) -> str: ...
@overload
def iso(ts: None, *, exact: bool = False) -> None: ...
def iso(ts: dt.datetime | None, *, exact: bool = False) -> str | None:
    """Naive UTC → ``2026-11-28T03:00:00Z`` (whole seconds); None stays None.

    ``exact`` keeps the microseconds (``…T03:00:00.250000Z``) where a value travels between
    our own processes and must come back the same (the control protocol)."""
    if ts is None:
        return None
    return (ts if exact else ts.replace(microsecond=0)).isoformat() + "Z"


def parse_utc(value: object) -> dt.datetime:
    """``…Z``, ``…+07:00`` or a time without a zone (taken as UTC) → naive UTC.

    Anything else raises ValueError; callers turn it into their own refusal (a control-socket
    ``bad-request``, a wire error, an API 400), each naming what was wrong in its own words.
    A moment that has no naive-UTC datetime (``9999-12-31T23:59:59-23:59``) raises
    OverflowError.
    """
    if not isinstance(value, str):
        raise ValueError(f"not an ISO 8601 time: {value!r}")
    ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return naive_utc(ts)


def naive_utc(value: dt.datetime | str) -> dt.datetime:
    """A time from anywhere as naive UTC: aware times are converted, naive ones are already
    UTC, text (what some SQLite paths hand back) is parsed with :func:`parse_utc`."""
    if isinstance(value, str):
        return parse_utc(value)
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def local_time(ts: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """Naive UTC → the same moment on the wall clock of ``tz`` (aware)."""
    return ts.replace(tzinfo=dt.UTC).astimezone(tz)


def local_day(ts: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.date:
    """The day in ``tz`` that the naive-UTC moment ``ts`` falls on."""
    return local_time(ts, tz).date()


def zone_name(tz: zoneinfo.ZoneInfo, at: dt.datetime) -> str:
    """The zone's short name at the naive-UTC moment ``at`` as people say it (``WIB``,
    ``WITA``, ``WIT``), not its key (``Asia/Jakarta``)."""
    return local_time(at, tz).tzname() or tz.key
