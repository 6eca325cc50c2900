"""The collector's time, for a village whose NTP cannot be reached (issue #11).

A Raspberry Pi has no real-time clock: after a power cut it boots on the time fake-hwclock
saved (up to an hour behind, days behind if it was off for days) and waits for NTP. A village
whose uplink reaches the province's collector but no NTP server would keep that clock. The
collector's time is already there: every acknowledgement of a batch carries it, signed with
the gateway's secret over the request's own nonce (:func:`hotspot.wire.sign_ack`).

* The sync agent (unprivileged) writes what it learnt — the collector's time and the
  *monotonic* time at which it held (the middle of the round trip), with this boot's id — to
  a small file next to the database, atomically (:func:`write_observation`).
* The gateway daemon (root, ``CAP_SYS_TIME``) reads it every few seconds
  (:class:`CollectorClock`). Only while the kernel says the clock is **not synchronised**,
  and only for an observation of this boot no older than ``MAX_AGE``, it works out the
  collector's time now (the observation plus the monotonic seconds since) and steps the
  system clock to it when the wall clock is ``[gateway] collector_time_step_seconds`` or
  more *behind*; back only when it is more than ``MAX_AHEAD`` ahead (a clock set far
  ahead by hand, a saved time from a wrong clock), never for less. A collector time outside
  ``EARLIEST``–``LATEST`` is refused, signed or not (a province server on 1970 must not
  drag every village with it). The step is logged; the session engine's ClockWatch then
  follows it as it follows any NTP step.
* In tests the clock cannot be set: with ``HOTSPOT_TEST_CLOCK_SHIFT_FILE`` the setter adds
  the step to that file (the daemon's :class:`hotspot.timeutil.ShiftedClock`), and the
  kernel's "synchronised" is read from ``<that file>.synced`` ("0"/"1") when it exists.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hotspot.config import Config, database_path
from hotspot.health import clock_synchronised
from hotspot.timeutil import TEST_CLOCK_SHIFT_ENV, utcnow

log = logging.getLogger(__name__)

OBSERVATION_SUFFIX = ".collector-time.json"
SOURCE_SUFFIX = ".clock-source.json"
# An observation older than this (monotonic seconds) is not used: the crystal's drift is a
# few seconds a day, but a day without any answer from the collector is not "reaching it".
MAX_AGE = 24 * 3600.0
# A round trip longer than this says too little about when the collector's time held.
MAX_ROUND_TRIP = 10.0
# Back only from further ahead than this: no network delay explains an hour, and a smaller
# step back would only move every stamp made since (docs/reliability.md).
MAX_AHEAD = 3600.0
EARLIEST = dt.datetime(2026, 1, 1)  # before this release: the collector's clock is wrong
LATEST = dt.datetime(2100, 1, 1)
# How often the gateway looks (the file is tiny; a step comes at most this late).
CHECK_SECONDS = 5.0


def boot_id() -> str:
    """This boot's id (the monotonic clock starts again at every boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _state_file(config: Config, suffix: str) -> Path:
    db = database_path(config.database.url)
    if db is not None:
        return db.with_name(db.name + suffix)
    return Path(tempfile.gettempdir()) / f"hotspot-{config.sync.gateway_id or 'gateway'}{suffix}"


def observation_path(config: Config) -> Path:
    """Where the sync agent leaves the collector's time (next to the database: the state
    directory both the agent and the gateway write)."""
    return _state_file(config, OBSERVATION_SUFFIX)


def source_path(config: Config) -> Path:
    """Where the gateway notes that it set the clock from the collector's time (this boot)."""
    return _state_file(config, SOURCE_SUFFIX)


def _write_json(path: Path, data: dict[str, object]) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass(frozen=True)
class Observation:
    """The collector's clock (Unix seconds) at the monotonic moment ``monotonic`` of boot
    ``boot``."""

    collector_time: float
    monotonic: float
    boot: str

    def now(self, monotonic_now: float, boot: str) -> float | None:
        """The collector's time now, or None when this observation cannot tell (another
        boot, a monotonic time from the future, too old)."""
        age = monotonic_now - self.monotonic
        if boot != self.boot or age < 0 or age > MAX_AGE:
            return None
        return self.collector_time + age


def write_observation(path: Path, obs: Observation) -> None:
    _write_json(
        path,
        {"collector_time": obs.collector_time, "monotonic": obs.monotonic, "boot": obs.boot},
    )


def read_observation(path: Path) -> Observation | None:
    try:
        with open(path) as fh:
            data = json.load(fh)
        obs = Observation(
            float(data["collector_time"]), float(data["monotonic"]), str(data["boot"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return obs


def plan_step(wall: float, collector: float, min_step: float) -> float | None:
    """The step (seconds, signed) that sets ``wall`` to ``collector``, or None: forward from
    ``min_step`` behind, back only from more than ``MAX_AHEAD`` ahead; a collector time
    outside EARLIEST–LATEST never."""
    lo = EARLIEST.replace(tzinfo=dt.UTC).timestamp()
    hi = LATEST.replace(tzinfo=dt.UTC).timestamp()
    if not lo <= collector < hi:
        return None
    delta = collector - wall
    if delta >= min_step or -delta > MAX_AHEAD:
        return round(delta, 3)
    return None


# -- setting the clock ------------------------------------------------------------------------


class ClockSetter(Protocol):
    def synchronised(self) -> bool | None:
        """What the kernel says (None: cannot tell)."""

    def step(self, seconds: float) -> None:
        """Move the system's wall clock by ``seconds``; OSError when not allowed."""


class SystemClock:
    """The real thing: ``clock_settime(CLOCK_REALTIME)`` (needs ``CAP_SYS_TIME`` and the
    ``@clock`` system calls: hotspot-gateway.service)."""

    def synchronised(self) -> bool | None:
        return clock_synchronised()

    def step(self, seconds: float) -> None:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + seconds)


class ShiftFileClock:
    """Tests: the step is added to the shift file the daemon's ShiftedClock reads; the
    kernel's word is ``<file>.synced`` ("0"/"1") if it exists."""

    def __init__(self, path: str):
        self.path = Path(path)

    def synchronised(self) -> bool | None:
        try:
            return self.path.with_name(self.path.name + ".synced").read_text().strip() != "0"
        except OSError:
            return clock_synchronised()

    def step(self, seconds: float) -> None:
        try:
            shift = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            shift = 0.0
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.write_text(f"{shift + seconds}\n")
        os.replace(tmp, self.path)


def clock_setter() -> ClockSetter:
    """The system's clock, or in tests (``HOTSPOT_TEST_CLOCK_SHIFT_FILE``) the shift file."""
    path = os.environ.get(TEST_CLOCK_SHIFT_ENV)
    return ShiftFileClock(path) if path else SystemClock()


def clock_source(config: Config, synced: bool | None, boot: str | None = None) -> str:
    """Where the clock's time comes from, for the health record: ``ntp`` (the kernel says
    synchronised), ``collector`` (not synchronised, but set from the collector's time this
    boot) or ``none``."""
    if synced:
        return "ntp"
    try:
        with open(source_path(config)) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return "none"
    mine = boot if boot is not None else boot_id()
    ok = isinstance(data, dict) and data.get("source") == "collector" and data.get("boot") == mine
    return "collector" if ok else "none"


class CollectorClock:
    """The gateway's side (module docstring): :meth:`check` every tick, at most once per
    ``CHECK_SECONDS``; returns the step made (seconds) or None."""

    def __init__(
        self,
        config: Config,
        wall: Callable[[], dt.datetime] = utcnow,
        setter: ClockSetter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        boot: str | None = None,
        synced: Callable[[], bool | None] | None = None,
    ):
        self.config = config
        self.min_step = config.gateway.collector_time_step_seconds
        self.path = observation_path(config)
        self.wall = wall
        self.setter = setter if setter is not None else clock_setter()
        self.synced = synced if synced is not None else self.setter.synchronised
        self.monotonic = monotonic
        self.boot = boot if boot is not None else boot_id()
        self.next_check = 0.0
        self.refused: str | None = None  # the last reason not to step, logged once

    def _skip(self, why: str) -> None:
        if why != self.refused:
            log.info("collector's time not used: %s", why)
            self.refused = why

    def check(self, force: bool = False) -> float | None:
        mono = self.monotonic()
        if not self.min_step or (not force and mono < self.next_check):
            return None
        self.next_check = mono + CHECK_SECONDS
        if self.synced() is not False:
            self.refused = None  # NTP has the clock (or nobody can tell): leave it alone
            return None
        obs = read_observation(self.path)
        if obs is None:
            return None
        collector = obs.now(mono, self.boot)
        if collector is None:
            self._skip("the observation is from another boot or too old")
            return None
        wall = self.wall().replace(tzinfo=dt.UTC).timestamp()
        step = plan_step(wall, collector, self.min_step)
        if step is None:
            if not EARLIEST.replace(tzinfo=dt.UTC).timestamp() <= collector:
                self._skip("the collector's clock is before 2026: it is wrong itself")
            elif collector >= LATEST.replace(tzinfo=dt.UTC).timestamp():
                self._skip("the collector's clock is past 2100: it is wrong itself")
            return None
        try:
            self.setter.step(step)
        except OSError as exc:
            self._skip(f"the clock cannot be set ({exc.strerror or exc})")
            return None
        self.refused = None
        log.warning(
            "clock not synchronised (no NTP): set from the collector's time, a step of %+.0f s",
            step,
        )
        try:
            _write_json(
                source_path(self.config),
                {"source": "collector", "boot": self.boot, "step": step, "at": time.time()},
            )
        except OSError as exc:  # only the health record's clock_source depends on it
            log.warning("could not note the clock's source: %s", exc)
        return step
