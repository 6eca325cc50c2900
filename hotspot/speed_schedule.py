"""Speed schedules: which rates a tier runs at, at a given moment.

A tier's ``schedule`` (``[tiers.NAME] schedule``, validated in hotspot/config.py) lists
windows of the village's wall clock with other rates; outside them the tier's own rates
hold. Pure functions of (tier, moment, zone): the gateway's engine puts the result into its
desired state, so the kernel follows the schedule however it got out of step (a restart, a
missed edge, a clock that jumped).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from hotspot.config import SpeedWindow, Tier
from hotspot.timeutil import local_time, naive_utc


@dataclass(frozen=True)
class Speed:
    """The rates of a tier at one moment; ``window`` and ``until`` (naive UTC, the end of
    the window) are set while a window of the schedule is in force."""

    down_kbps: int
    up_kbps: int
    window: SpeedWindow | None = None
    until: dt.datetime | None = None


def _minute(local: dt.datetime) -> int:
    return local.hour * 60 + local.minute


def _occurrences(
    minute_of_day: int, now: dt.datetime, tz: zoneinfo.ZoneInfo
) -> Iterable[dt.datetime]:
    """That wall-clock minute on the local days around ``now``, as naive UTC, in order."""
    today = local_time(now, tz).date()
    for days in (-1, 0, 1, 2):
        day = today + dt.timedelta(days=days)
        hour, minute = divmod(minute_of_day, 60)
        yield naive_utc(dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz))


def _next(minute_of_day: int, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first moment strictly after ``now`` at which the wall clock shows that minute."""
    return next(t for t in _occurrences(minute_of_day, now, tz) if t > now)


def window_at(tier: Tier, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> SpeedWindow | None:
    """The window of ``tier``'s schedule that the village's wall clock is in at ``now``
    (naive UTC), if any (windows never overlap: at most one)."""
    if not tier.schedule:
        return None
    minute = _minute(local_time(now, tz))
    return next((w for w in tier.schedule if w.covers(minute)), None)


def speed_at(tier: Tier, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> Speed:
    """The rates ``tier`` runs at, at ``now`` (naive UTC)."""
    window = window_at(tier, now, tz)
    if window is None:
        return Speed(tier.down_kbps, tier.up_kbps)
    return Speed(window.down_kbps, window.up_kbps, window, _next(window.end, now, tz))


def next_edge(tiers: Iterable[Tier], now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """The first moment after ``now`` at which a window of any of ``tiers`` starts or ends
    (naive UTC); None when no tier has a schedule."""
    edges = [
        _next(minute, now, tz)
        for tier in tiers
        for window in tier.schedule
        for minute in (window.start, window.end)
    ]
    return min(edges, default=None)
