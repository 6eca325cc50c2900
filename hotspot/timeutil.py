"""Moments in time, the one way the whole product handles them.

Inside the product a moment is a *naive UTC* ``datetime``: SQLite has no time zones, so every
stored time is naive and means UTC. On the outside (control socket, reports, APIs, JSON) it is
ISO 8601 with a ``Z``, to the second: ``2026-11-28T03:00:00Z``. A village's wall clock is
only for people (pages, sales days), computed at the edge with :func:`local_time`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import zoneinfo
from collections.abc import Callable
from typing import overload

log = logging.getLogger(__name__)

# Tests only: a file holding seconds the daemon's wall clock is shifted by (see wall_clock).
TEST_CLOCK_SHIFT_ENV = "HOTSPOT_TEST_CLOCK_SHIFT_FILE"


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


# Indonesia's three zones by the names villagers use. tzdata spells most of them this way
# too, but not on every system (and not for every alias): the table, not tzdata, decides.
_ZONE_NAMES = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Ujung_Pandang": "WITA",
    "Asia/Jayapura": "WIT",
}


def zone_name(tz: zoneinfo.ZoneInfo, at: dt.datetime | None = None) -> str:
    """The short name people read for the village's zone: ``WIB``, ``WITA`` or ``WIT`` for
    Indonesia's zones (never ``Asia/Jakarta``); elsewhere tzdata's abbreviation if it is a
    word, else the offset (``UTC+9``). ``at`` (naive UTC) matters only for zones with
    summer time."""
    known = _ZONE_NAMES.get(tz.key)
    if known is not None:
        return known
    local = local_time(at or utcnow(), tz)
    abbrev = local.tzname() or ""
    if abbrev.isalpha():
        return abbrev
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


class MonotonicStep:
    """Seconds that really passed between two calls of :meth:`step`, from the monotonic
    clock: a wall-clock jump (an NTP correction, a wrong RTC after a power cut, someone
    setting the date) neither adds nor removes time. Each step is capped at ``cap_seconds``,
    so a stalled process (a suspended VM, a long GC, a hung disk) is not charged for the
    time it did not look. The first step is 0.

    Used for online time (gateway/engine.py); meant for every duration that must not follow
    the wall clock (issue #11)."""

    def __init__(self, cap_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap_seconds
        self.monotonic = monotonic
        self._last: float | None = None

    def step(self) -> float:
        now = self.monotonic()
        last, self._last = self._last, now
        if last is None:
            return 0.0
        return min(self.cap, max(0.0, now - last))


class ClockWatch:
    """Tells a step of the wall clock from time passing: between two calls of :meth:`step`
    the wall clock should move as far as the monotonic one. When it moved by more than
    ``tolerance`` seconds more (or less) than that, the clock was stepped — NTP synchronising
    days after a Pi without a real-time clock booted on its last saved time, someone setting
    the date — and :meth:`step` returns the step as a signed duration; otherwise None.

    NTP's own slewing moves the wall clock by at most half a millisecond per second, far
    below any tolerance worth setting; what is left over is a step (issue #11)."""

    def __init__(
        self,
        tolerance: float,
        wall: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tolerance = tolerance
        self.wall = wall
        self.monotonic = monotonic
        self._last: tuple[dt.datetime, float] | None = None

    def reset(self, wall_now: dt.datetime | None = None) -> None:
        """Start watching from now (``wall_now``: the wall time just read, to read it once)."""
        self._last = (self.wall() if wall_now is None else wall_now, self.monotonic())

    def step(self, wall_now: dt.datetime | None = None) -> dt.timedelta | None:
        """The step since the last call (None: none); the first call only starts watching."""
        wall_now = self.wall() if wall_now is None else wall_now
        mono_now = self.monotonic()
        last, self._last = self._last, (wall_now, mono_now)
        if last is None:
            return None
        drift = (wall_now - last[0]).total_seconds() - (mono_now - last[1])
        if abs(drift) < self.tolerance:
            return None
        return dt.timedelta(seconds=round(drift, 6))


class ShiftedClock:
    """:func:`utcnow` plus the seconds written in a file, read at every call: a wall clock
    that a test steps while the real daemon runs (a +3 day jump, an hour back) without
    touching the machine's clock and without libfaketime, whose Debian build breaks
    Python's ``time.sleep`` when it leaves the monotonic clock alone (libfaketime #426).
    The monotonic clock is the machine's. An unreadable file keeps the last shift."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.shift = 0.0

    def __call__(self) -> dt.datetime:
        try:
            with open(self.path) as fh:
                self.shift = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            pass
        return utcnow() + dt.timedelta(seconds=self.shift)


def wall_clock() -> Callable[[], dt.datetime]:
    """The daemon's wall clock: :func:`utcnow`, or in tests a :class:`ShiftedClock` named by
    the environment (``HOTSPOT_TEST_CLOCK_SHIFT_FILE``; said loudly in the log)."""
    path = os.environ.get(TEST_CLOCK_SHIFT_ENV)
    if not path:
        return utcnow
    log.warning("TEST CLOCK: the wall clock is shifted by the seconds in %s", path)
    return ShiftedClock(path)
