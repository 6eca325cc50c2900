"""Device health, sampled with psutil: CPU, load, memory, disk, temperature (where the board
reports one), uptime, clients online and the uplink (can we reach the collector, how fast).
The machine is read through :mod:`hotspot.health`, the probe the console uses too.

A sample is a ``health`` record of :mod:`hotspot.wire`; it is queued like every other report,
so the province sees how a village fared while its link was down, once it is back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hotspot import certs
from hotspot.config import Config
from hotspot.health import disk_path, temperature, uptime_seconds
from hotspot.model import ClientSession
from hotspot.policy import stored_version
from hotspot.version import software_version

log = logging.getLogger(__name__)


def probe_uplink(url: str, timeout: float = 3.0) -> tuple[bool | None, float | None]:
    """(reachable, TCP connect time in ms) of the collector's host and port; (None, None)
    when no collector is configured."""
    if not url:
        return None, None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    start = time.monotonic()
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError:
        return False, None
    return True, round((time.monotonic() - start) * 1000, 1)


# A Raspberry Pi's firmware reports under-voltage and throttling here (hex digits, e.g.
# "50005"), and through ``vcgencmd get_throttled`` ("throttled=0x50005") where the file is not.
THROTTLED_FILE = "/sys/devices/platform/soc/soc:firmware/get_throttled"
_THROTTLED = re.compile(r"^\s*(?:throttled=)?(?:0x)?([0-9a-fA-F]{1,8})\s*$")


def parse_throttled(text: str) -> int | None:
    """The bits of a get_throttled answer (the file's or vcgencmd's), None if it is not one."""
    m = _THROTTLED.match(text or "")
    return int(m.group(1), 16) if m else None


def throttled(path: str = THROTTLED_FILE) -> int | None:
    """The Pi's get_throttled bits (bit 0 under-voltage now, 1 frequency capped, 2 throttled,
    3 soft temperature limit; bits 16-19 the same since boot), or None on other boards."""
    try:
        with open(path, encoding="ascii") as f:
            return parse_throttled(f.read())
    except (OSError, UnicodeDecodeError):
        pass
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd is None:
        return None
    try:
        out = subprocess.run(
            [vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=3, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_throttled(out.stdout) if out.returncode == 0 else None


def clients_online(db: Engine) -> int:
    with Session(db) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ClientSession)
                .where(ClientSession.ended_at.is_(None))
            )
            or 0
        )


def sample(
    config: Config,
    db: Engine,
    now: dt.datetime,
    *,
    backlog: int = 0,
    cpu_interval: float | None = None,
) -> dict[str, Any]:
    """One health record (``cpu_interval`` None = CPU use since the previous call in this
    process, as a long-running agent does; a number = measure that long now)."""
    cpu = psutil.cpu_percent(interval=cpu_interval)
    try:
        load1, load5, load15 = os.getloadavg()
    except OSError:
        load1 = load5 = load15 = 0.0
    disk = psutil.disk_usage(disk_path(config))
    ok, ms = probe_uplink(config.sync.upstream_url)
    rec: dict[str, Any] = {
        "kind": "health",
        "sampled_at": now.replace(microsecond=0),
        "cpu_pct": round(min(100.0, max(0.0, cpu)), 1),
        "load1": round(load1, 2),
        "load5": round(load5, 2),
        "load15": round(load15, 2),
        "mem_pct": round(psutil.virtual_memory().percent, 1),
        "disk_pct": round(disk.percent, 1),
        "disk_free_mb": int(disk.free // 1_000_000),
        "temp_c": temperature(),
        "uptime_s": uptime_seconds(),
        "uplink_ok": ok,
        "uplink_ms": ms,
        "clients_online": clients_online(db),
        "backlog": backlog,
        "throttled": throttled(),
        "software_version": software_version(),
    }
    # The province's policy this gateway runs (issue #15), only when it runs one: a collector
    # from before policies refuses keys it does not know, and never sent one either.
    version = stored_version(config.policy.state_file) if config.policy.public_key else None
    if version is not None:
        rec["policy_version"] = version
    # The HTTPS certificate installed (issue #15), expired included, only with one: the
    # collector shows it beside the one it issued (a mismatch, or near expiry, is visible).
    rec.update(installed_certificate(config, now))
    return rec


def installed_certificate(config: Config, now: dt.datetime) -> dict[str, Any]:
    """``cert_name`` and ``cert_not_after`` of the pair installed (complete, for the name;
    expired included), or nothing: without one the keys are left out (optional on the wire)."""
    if not config.sync.cert_zone:
        return {}
    got = certs.installed(Path(config.sync.cert_dir), config.sync.cert_name, now)
    if got is None:
        return {}
    return {"cert_name": got.name, "cert_not_after": got.not_after.replace(microsecond=0)}
