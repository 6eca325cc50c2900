"""Is the village's internet there? The WAN link's state and a cheap probe, with hysteresis.

Every ``uplink.probe_seconds`` the monitor looks at the WAN interface's operstate (a cable
pulled, a modem switched off: ``down``/``lowerlayerdown``) and, when the link is up, opens a
TCP connection to each of ``uplink.probe_targets`` in turn (by default the collector's host
and port) until one answers. An answer — even a refusal (RST) — means the internet is there;
a timeout or an unreachable route means it is not: that is how a link that is up but
black-holes everything is told from a working one, without ICMP, DNS or any payload (one
SYN per round while all is well).

One lost probe is not an outage: ``uplink.down_after`` failed rounds in a row open one, and
``uplink.up_after`` answered rounds in a row close it. The outage is a row of
``uplink_outage`` (start = the first failed round, end = the first answered one, cause =
``link`` or ``unreachable``): the portal shows villagers that the village's link is down
while the row is open, and the sync agent reports every row to the collector as a window.
A gateway restarted during an outage takes up the open row rather than starting another.

While an outage lasts the monitor also keeps a hosts file (``uplink-down``) in
``uplink.walled_hosts_dir``, the walled resolver's ``hostsdir=`` (dnsmasq reloads it by
inotify): it names the captive probes' hosts at the gateway's LAN address, so a phone that is
not logged in still resolves its OS probe — whose plain HTTP the gateway sends to the portal
— when the upstream resolvers cannot be reached and the main dnsmasq's cache has expired.
dnsmasq answers such names with a TTL of 0, and the file goes as soon as the outage ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.health import wan_state
from hotspot.model_uplink import OutageCause, UplinkOutage
from hotspot.timeutil import iso, utcnow

log = logging.getLogger(__name__)

HOSTS_FILE = "uplink-down"  # in uplink.walled_hosts_dir

# operstates (Documentation/networking/operstates.rst) that mean "no link"; "unknown" is what
# drivers without carrier reporting say (tun, some USB modems): the probe decides there.
LINK_DOWN = frozenset({"down", "lowerlayerdown", "notpresent", "dormant"})


def tcp_probe(targets: Sequence[tuple[str, int]], timeout: float) -> bool:
    """True when one of ``targets`` answers a TCP connect (a refusal is an answer)."""
    for host, port in targets:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except ConnectionRefusedError:
            return True  # the host said no: the internet is there
        except OSError as exc:  # timeout, no route, unreachable, no DNS
            log.debug("uplink probe %s:%d: %s", host, port, exc)
    return False


class UplinkMonitor:
    def __init__(
        self,
        config: Config,
        db: Engine,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        link_state: Callable[[str], str | None] = wan_state,
        probe: Callable[[Sequence[tuple[str, int]], float], bool] = tcp_probe,
    ):
        self.config = config
        self.db = db
        self.clock = clock
        self.link_state = link_state
        self.probe = probe
        self.failed = 0  # rounds in a row without an answer
        self.answered = 0  # rounds in a row with one
        self.first_failed_at: dt.datetime | None = None
        self.first_cause = OutageCause.UNREACHABLE
        self.first_answered_at: dt.datetime | None = None
        self.outage_id: int | None = None  # the open row
        self.outage_since: dt.datetime | None = None
        self.outage_cause: OutageCause | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._adopt_open_outage()
        self.write_walled_hosts()

    def _adopt_open_outage(self) -> None:
        try:
            with Session(self.db) as s:
                row = s.scalar(
                    select(UplinkOutage)
                    .where(UplinkOutage.ended_at.is_(None))
                    .order_by(UplinkOutage.id.desc())
                    .limit(1)
                )
                if row is not None:
                    self.outage_id, self.outage_since = row.id, row.started_at
                    self.outage_cause = row.cause
        except SQLAlchemyError as exc:
            log.error("uplink: cannot read the open outage: %s", str(exc).splitlines()[0])

    def write_walled_hosts(self) -> None:
        """The walled resolver's hosts file, present exactly while an outage is open."""
        folder = self.config.uplink.walled_hosts_dir
        if not folder:
            return
        path = os.path.join(folder, HOSTS_FILE)
        try:
            if not self.down:
                if os.path.exists(path):
                    os.unlink(path)
                return
            net = self.config.network
            line = " ".join([str(net.gateway_ip), *net.captive_probe_hosts])
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:  # written whole, then renamed: dnsmasq reads it once
                fh.write("# the uplink is down: captive probes resolve to the portal\n")
                fh.write(line + "\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:  # no such folder (not provisioned), read-only: DNS as before
            log.warning("uplink: walled hosts file %s: %s", path, exc)

    @property
    def down(self) -> bool:
        return self.outage_id is not None

    def status(self) -> dict[str, Any]:
        return {
            "state": "down" if self.down else "up",
            "cause": self.outage_cause.value if self.outage_cause is not None else None,
            "since": iso(self.outage_since) if self.outage_since is not None else None,
            "probe_targets": [f"{h}:{p}" for h, p in self.config.uplink.probe_targets],
            "last_error": self.last_error,
        }

    def observe(self) -> tuple[bool, OutageCause]:
        """One round: (answered, the cause if not)."""
        state = self.link_state(self.config.network.wan_interface)
        if state is None or state in LINK_DOWN:
            return False, OutageCause.LINK
        u = self.config.uplink
        if not u.probe_targets:
            return True, OutageCause.UNREACHABLE
        return self.probe(u.probe_targets, u.probe_timeout_seconds), OutageCause.UNREACHABLE

    def check(self) -> None:
        """One round of probes, and the outage opened or closed when the hysteresis says so.
        A row that cannot be written (a full disk) is tried again at the next round."""
        now = self.clock()
        ok, cause = self.observe()
        u = self.config.uplink
        if ok:
            if self.answered == 0:
                self.first_answered_at = now
            self.answered += 1
            self.failed = 0
            if self.down and self.answered >= u.up_after:
                self._close(self.first_answered_at or now)
            return
        if self.failed == 0:
            self.first_failed_at, self.first_cause = now, cause
        self.failed += 1
        self.answered = 0
        if not self.down and self.failed >= u.down_after:
            self._open(self.first_failed_at or now, self.first_cause)

    def _open(self, started: dt.datetime, cause: OutageCause) -> None:
        try:
            with Session(self.db) as s, s.begin():
                row = UplinkOutage(started_at=started, cause=cause)
                s.add(row)
                s.flush()
                outage_id = row.id
        except SQLAlchemyError as exc:
            self.last_error = str(exc).splitlines()[0]
            log.error("uplink: cannot record the outage: %s", self.last_error)
            return
        self.last_error = None
        self.outage_id, self.outage_since, self.outage_cause = outage_id, started, cause
        self.write_walled_hosts()
        log.warning(
            "uplink down since %s (%s): %d rounds without an answer",
            iso(started),
            cause.value,
            self.failed,
        )

    def _close(self, ended: dt.datetime) -> None:
        try:
            with Session(self.db) as s, s.begin():
                row = s.get(UplinkOutage, self.outage_id)
                if row is not None:
                    # A clock stepped back meanwhile (no RTC, NTP) must not make a negative window.
                    row.ended_at = max(ended, row.started_at)
        except SQLAlchemyError as exc:
            self.last_error = str(exc).splitlines()[0]
            log.error("uplink: cannot record the outage's end: %s", self.last_error)
            return
        self.last_error = None
        log.warning("uplink back at %s (down since %s)", iso(ended), iso(self.outage_since))
        self.outage_id = self.outage_since = self.outage_cause = None
        self.write_walled_hosts()

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.uplink.probe_timeout_seconds * 4 + 1)

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except (OSError, SQLAlchemyError):  # the monitor outlives it: the next round retries
                log.exception("uplink check failed")
            if self._stop.wait(self.config.uplink.probe_seconds):
                return
