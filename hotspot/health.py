"""The gateway's health as the machine reports it: processor, memory, storage, temperature
(where the board has a sensor), uptime, load, the WAN link — and what the sync agent last
learnt about the uplink. One probe for the sync agent's health samples (:mod:`sync.health`)
and the console's overview."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import time
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from hotspot.config import Config, database_path
from hotspot.model_sync import SyncOutbox
from hotspot.uplink import open_outage

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """``health.psutil``: imported when first read, not with this module — the portal's
    workers import this module for the console's overview page only (bench/README.md)."""
    if name == "psutil":
        import psutil

        return psutil
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Sensor names boards use for the SoC/CPU, most specific first (Raspberry Pi: cpu_thermal).
_SENSORS = ("cpu_thermal", "coretemp", "k10temp", "soc_thermal", "cpu-thermal", "acpitz")


def temperature() -> float | None:
    """The hottest CPU/SoC sensor in °C, or None when the board reports none."""
    import psutil

    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    for name in _SENSORS + tuple(sorted(set(sensors) - set(_SENSORS))):
        readings = [r.current for r in sensors.get(name, []) if r.current is not None]
        if readings:
            return round(max(readings), 1)
    return None


def disk_path(config: Config) -> str:
    """Where the database lives (its folder, or the nearest one that exists): the storage
    whose filling up matters."""
    path = database_path(config.database.url)
    p = path.parent if path is not None else None
    while p is not None and not p.exists():
        p = p.parent
    return str(p) if p is not None else "/"


def disk_warning(config: Config, disk_pct: float | None) -> bool:
    """Whether the database's filesystem is full enough to warn (``database.disk_warning_pct``,
    90 % by default): early, while logins, sales and reports can still be written."""
    return disk_pct is not None and disk_pct >= config.database.disk_warning_pct


# adjtimex(2) returns the clock's state; TIME_ERROR means the kernel's clock is not
# synchronised (STA_UNSYNC: nothing — systemd-timesyncd, chrony — has disciplined it lately).
_TIME_ERROR = 5
_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; room to spare


def clock_synchronised() -> bool | None:
    """Whether the kernel says its clock is synchronised (what ``timedatectl show -p
    NTPSynchronized`` reports, read straight from ``adjtimex`` with no change requested, so
    no privilege and no systemd are needed); None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = ctypes.create_string_buffer(_TIMEX_BYTES)  # modes = 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def uptime_seconds() -> int:
    import psutil

    return max(0, int(time.time() - psutil.boot_time()))


def wan_state(interface: str) -> str | None:
    """The WAN interface's link as the kernel reports it (``up``, ``down``, …); None when
    there is no such interface."""
    try:
        with open(f"/sys/class/net/{interface}/operstate") as fh:
            return fh.read().strip()
    except OSError:
        return None


def last_uplink(engine: Engine) -> bool | None:
    """What the sync agent's latest health sample said about the uplink (None: unknown)."""
    try:
        with engine.connect() as conn:
            payload = conn.execute(
                select(SyncOutbox.payload)
                .where(SyncOutbox.kind == "health")
                .order_by(SyncOutbox.id.desc())
                .limit(1)
            ).scalar()
    except SQLAlchemyError:  # a database without the outbox (never synced): unknown
        return None
    if not payload:
        return None
    try:
        sample = json.loads(payload)
    except ValueError:
        return None
    return sample.get("uplink_ok") if isinstance(sample, dict) else None


def snapshot(config: Config, engine: Engine) -> dict[str, Any]:
    """The console's overview of the gateway: ``cpu``, ``mem``, ``disk`` (percent of the
    database's filesystem used), ``disk_warning`` (at ``database.disk_warning_pct``),
    ``temp`` (°C), ``uptime`` (s), ``wan`` (link state), ``load`` (1 min), ``uplink_ok``,
    ``clock_synced`` (False: the clock is not synchronised, times shown may be wrong).
    What cannot be read is left out (or None): the page must show anyway."""
    import psutil

    out: dict[str, Any] = {}
    try:
        out["cpu"] = psutil.cpu_percent(interval=None)
        out["mem"] = psutil.virtual_memory().percent
        out["disk"] = psutil.disk_usage(disk_path(config)).percent
        out["temp"] = temperature()
        out["uptime"] = uptime_seconds()
    except (OSError, psutil.Error):
        log.debug("health unavailable", exc_info=True)
    out["disk_warning"] = disk_warning(config, out.get("disk"))
    out["wan"] = wan_state(config.network.wan_interface)
    out["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # The gateway's own monitor (gateway/uplink.py) first: it probes every few seconds, the
    # sync agent's sample may be minutes old.
    outage = open_outage(engine)
    out["uplink_ok"] = False if outage is not None else last_uplink(engine)
    out["uplink_down_since"] = outage[0] if outage is not None else None
    out["clock_synced"] = clock_synchronised()
    return out
