"""What the console says about a device: its maker (from the MAC's OUI), its name (from
dnsmasq's leases) and its current speed (from two readings of its byte counters)."""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path
from typing import Any

from hotspot.mac import is_locally_administered, oui

IEEE_CSV = Path("/usr/share/ieee-data/oui.csv")  # Debian's ieee-data, when installed
PRIVATE = "private"

_table: dict[str, str] | None = None
_lock = threading.Lock()


def _load() -> dict[str, str]:
    global _table
    with _lock:
        if _table is None:
            from portal.operator.oui_table import VENDORS

            table: dict[str, str] = {}
            if IEEE_CSV.exists():
                try:
                    with IEEE_CSV.open(encoding="utf-8", errors="replace") as fh:
                        for row in csv.DictReader(fh):
                            if row.get("Registry") == "MA-L" and row.get("Assignment"):
                                table[row["Assignment"].upper()] = (
                                    row.get("Organization Name") or ""
                                ).strip()[:40]
                except (OSError, csv.Error):
                    table = {}
            for vendor, prefixes in VENDORS.items():  # our short names win
                for p in prefixes.split():
                    table[p] = vendor
            _table = table
        return _table


def vendor(mac: str) -> str | None:
    """The maker's name, ``PRIVATE`` for a randomised address, or None when unknown."""
    if not mac:
        return None
    if is_locally_administered(mac):  # phones make these up per network
        return PRIVATE
    prefix = oui(mac)
    return None if prefix is None else _load().get(prefix)


class Leases:
    """Hostnames from dnsmasq's lease file (``<expiry> <mac> <ip> <hostname> <client-id>``),
    read again only when the file changes."""

    def __init__(self, path: str):
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def names(self) -> dict[str, str]:
        if not self.path:
            return {}
        try:
            st = os.stat(self.path)
        except OSError:
            return {}
        with self._lock:
            if self._stamp != (st.st_mtime, st.st_size):
                names: dict[str, str] = {}
                try:
                    with open(self.path, encoding="utf-8", errors="replace") as fh:
                        for line in fh:
                            parts = line.split()
                            if len(parts) >= 4 and parts[3] != "*":
                                names[parts[1].lower()] = parts[3][:64]
                except OSError:
                    return self._names
                self._names, self._stamp = names, (st.st_mtime, st.st_size)
            return self._names


class Rates:
    """Current speeds: the gateway's own (measured every tick) when it reports them, else
    from the byte counters of successive ``list`` answers (per worker process)."""

    MAX_AGE = 120.0

    def __init__(self) -> None:
        self._seen: dict[int, tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def update(
        self, sessions: list[dict[str, Any]], now: float | None = None
    ) -> dict[int, tuple[int, int]]:
        """{session id: (down bit/s, up bit/s)} for sessions seen before."""
        now = time.monotonic() if now is None else now
        out: dict[int, tuple[int, int]] = {}
        with self._lock:
            fresh: dict[int, tuple[float, int, int]] = {}
            for s in sessions:
                sid = s.get("id")
                if sid is None:
                    continue
                if "rate_down_bps" in s:  # the gateway measures it every tick
                    out[sid] = (int(s["rate_down_bps"] or 0), int(s.get("rate_up_bps") or 0))
                    continue
                down, up = int(s.get("bytes_down") or 0), int(s.get("bytes_up") or 0)
                old = self._seen.get(sid)
                if old is not None and 0.5 <= now - old[0] <= self.MAX_AGE:
                    dt_s = now - old[0]
                    out[sid] = (
                        max(0, int((down - old[1]) * 8 / dt_s)),
                        max(0, int((up - old[2]) * 8 / dt_s)),
                    )
                    fresh[sid] = (now, down, up) if now - old[0] > 5 else old
                else:
                    fresh[sid] = (now, down, up)
            self._seen = fresh
        return out
