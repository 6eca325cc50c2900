"""``hotspot gateway run``: the privileged daemon's main loop.

Every tick (``gateway.tick_seconds``) the session engine accounts, expires and reconciles;
once a minute the daemon also withdraws unsold voucher stock past its shelf life and purges
old rows of the brakes on guessing (wrong voucher codes, console logins) — the periodic jobs
of the core, so that no page of the portal or the console has to write when it is only
looked at.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from gateway import sdnotify, tc
from gateway.control_server import ControlServer, Dispatcher
from gateway.datapath import DataPath
from gateway.dnsapply import CertWatch, DnsApplier
from gateway.engine import SessionEngine
from gateway.netlink import IPRoute
from gateway.policy import PolicyKeeper
from gateway.uplink import UplinkMonitor
from hotspot.attempts import purge_attempts
from hotspot.collector_time import ClockSetter, CollectorClock
from hotspot.config import Config
from hotspot.db import checkpoint_if_due, is_storage_full, open_database
from hotspot.errors import ConfigError, KernelError
from hotspot.health import clock_synchronised
from hotspot.memory import EXIT_MEMORY_CEILING, FreedMemory, MemoryCeiling
from hotspot.pseudonym import load_key
from hotspot.radius.secret import read_secret
from hotspot.timeutil import iso, utcnow
from hotspot.version import software_version
from hotspot.vouchers.withdrawal import expire_unsold

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics, MetricsListener
    from gateway.radius import RadiusService

log = logging.getLogger(__name__)

# How often unsold stock past its shelf life is withdrawn. Shelf lives are days long, so a
# minute late is never noticed; the usual call is one indexed read that finds nothing.
STOCK_EXPIRY_SECONDS = 60.0


def check_interfaces(config: Config) -> None:
    """A missing interface is a configuration error, found before anything is applied."""
    with IPRoute() as ipr:
        for key in ("lan_interface", "wan_interface"):
            name = getattr(config.network, key)
            if not ipr.link_lookup(ifname=name):
                raise ConfigError(f"network.{key}", f"no interface named {name!r} on this machine")


def report_class_progress(ifname: str, done: int, total: int) -> None:
    """Before each `tc -batch` run of the start's classes: systemd's start timeout moved
    past the run (``EXTEND_TIMEOUT_USEC``: a /18's first start takes minutes, the unit's
    TimeoutStartSec 90 s), and how far it got, in ``systemctl status`` and the log."""
    sdnotify.notify(
        f"EXTEND_TIMEOUT_USEC={int((tc.BATCH_TIMEOUT_S + 30) * 1_000_000)}\n"
        f"STATUS=shaping classes on {ifname}: {done} of {total}"
    )
    if total > tc.BATCH_CHANGES:
        log.info("shaping classes on %s: %d of %d", ifname, done, total)


class Gateway:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], dt.datetime] = utcnow,
        clock_synced: Callable[[], bool | None] = clock_synchronised,
        clock_setter: ClockSetter | None = None,
    ):
        self.config = config
        self.clock = clock
        self.clock_synced = clock_synced
        self.stock_waits_for_clock = False  # logged once per wait
        # NTP unreachable: the clock is set from the collector's time (issue #11)
        self.collector_clock = CollectorClock(
            config, wall=clock, setter=clock_setter, synced=clock_synced
        )
        self.db: Any = None
        self.stopping = threading.Event()
        self.datapath: DataPath | None = None
        self.engine: SessionEngine | None = None
        self.server: ControlServer | None = None
        self.radius: RadiusService | None = None
        self.uplink: UplinkMonitor | None = None
        self.policies = PolicyKeeper(config, clock=clock)
        self.dns: DnsApplier | None = None  # the resolvers' files ([dns_filter] conf_dir)
        self.started = time.monotonic()
        self.ticks = 0
        self.last_tick_error: str | None = None
        self.checkpoint_failure: str | None = None  # the WAL's checkpoint failing: logged once
        self.next_stock_expiry = 0.0  # monotonic seconds; the first tick does it
        # malloc_trim once an hour (hotspot/memory.py; [gateway] trim_seconds).
        self.freed_memory = FreedMemory(every=config.gateway.trim_seconds)
        # Past [gateway] restart_above_mb the daemon stops and systemd starts it again.
        self.memory_ceiling = MemoryCeiling(config.gateway.restart_above_mb)
        self.exit_status = 0
        self.metrics: GatewayMetrics | None = None  # [gateway] metrics_listen
        self.metrics_listener: MetricsListener | None = None

    def status(self) -> dict[str, Any]:
        assert self.engine is not None and self.datapath is not None
        return {
            "version": software_version(),
            "uptime_seconds": int(time.monotonic() - self.started),
            "village": self.config.village.name,
            "table": f"inet {self.config.gateway.table}",
            "lan_interface": self.config.network.lan_interface,
            "wan_interface": self.config.network.wan_interface,
            "leaf_qdisc": self.datapath.down.leaf,
            "sessions": len(self.engine.live),
            "ticks": self.ticks,
            "last_tick_error": self.last_tick_error,
            "uplink": self.uplink.status() if self.uplink is not None else None,
            "clock_synced": self.clock_synced(),
            "last_clock_step": None
            if self.engine.last_step is None
            else {"at": iso(self.engine.last_step[0]), "seconds": self.engine.last_step[1]},
            "tiers": {n: t.__dict__ for n, t in self.config.tiers.items()},
            "policy_version": self.policies.version or None,
            "dns": self.dns.status()
            if self.dns is not None
            else {"filter_on": self.datapath.layout.dns_filter},
        }

    def apply_policy(self, old: Config, new: Config) -> None:
        """A new policy taken (gateway/policy.py): the walled garden in one nftables
        transaction, then the engine's configuration (the free tier's rates)."""
        assert self.engine is not None and self.datapath is not None
        gardens = (old.network.walled_garden, new.network.walled_garden)
        domains = (old.network.walled_garden_domains, new.network.walled_garden_domains)
        if gardens[0] != gardens[1] or domains[0] != domains[1]:
            self.datapath.set_walled_garden(gardens[1], flush_dns=domains[0] != domains[1])
        if self.dns is not None:
            self.dns.want(new)  # the thread writes the files; the tick mirrors the switch
        elif old.dns_filter.enabled != new.dns_filter.enabled:
            self.datapath.set_dns_filter(new.dns_filter.enabled)
        moved = self.engine.apply_config(new)
        self.config = new
        log.info("policy applied: %d running sessions changed rates", moved)

    def run(self) -> int:
        # The last good policy over the local file: what the data path is built from.
        self.config = self.policies.load()
        check_interfaces(self.config)
        # Migrated in a child process when behind: the daemon never carries Alembic.
        # Its commits never checkpoint the WAL: _tick does, outside the engine's lock.
        db = self.db = open_database(self.config.database.url, apart=True, autocheckpoint=False)
        self.datapath = DataPath(self.config)
        self.engine = SessionEngine(self.config, db, self.datapath, clock=self.clock)
        if self.config.radius.enabled:
            # Imported only with [radius] on: pyrad and the RADIUS modules are 1.5 MB.
            from gateway.radius import RadiusService

            # Before the engine starts: sessions that ended while we were away get their Stop.
            self.radius = RadiusService(
                self.config,
                db,
                self.engine,
                read_secret(self.config.radius.secret_file),
                load_key(self.config, db)
                if self.config.radius.calling_station_id == "pseudonym"
                else None,
                clock=self.clock,
            )
        self.datapath.class_progress = report_class_progress
        self.engine.start()
        self.datapath.class_progress = None
        self.uplink = UplinkMonitor(self.config, db, clock=self.clock)
        if self.config.gateway.metrics_listen:
            self.start_metrics()
        self.policies.apply = self.apply_policy
        if self.config.dns_filter.conf_dir:
            self.dns = DnsApplier(
                self.config.dns_filter.conf_dir,
                self.config.dns_filter.list_dir,
                cert_watch=CertWatch(self.config),  # the portal's name follows the pair
            )
            self.dns.start()
            self.dns.want(self.config)
        self.server = ControlServer(
            self.config.control.socket,
            Dispatcher(self.engine, self.status, self.radius, self.metrics, self.policies),
            self.config.control.group,
        )
        self.server.start()
        if self.radius is not None:
            self.radius.start()
        self.uplink.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        sdnotify.notify(f"READY=1\nSTATUS=serving {len(self.engine.live)} sessions")
        log.info("gateway %s up for %s", software_version(), self.config.village.name)
        tick = self.config.gateway.tick_seconds
        watchdog = sdnotify.watchdog_interval()
        try:
            while not self.stopping.wait(tick):
                self._tick()
                if watchdog is not None:
                    sdnotify.notify("WATCHDOG=1")
        finally:
            sdnotify.notify("STOPPING=1")
            # The kernel state stays: clients keep their access while we are restarted, and
            # the next start reconciles it with the database.
            self.server.stop()
            if self.metrics_listener is not None:
                self.metrics_listener.stop()
            if self.radius is not None:
                self.radius.stop()
            self.uplink.stop()
            if self.dns is not None:
                self.dns.stop()
            self.engine.flush()
            self.datapath.close()
            log.info("gateway stopped; kernel state left in place")
        return self.exit_status

    def start_metrics(self) -> None:
        """The Prometheus listener on ``[gateway] metrics_listen`` (gateway/metrics.py). If
        it cannot listen (an address this machine does not have yet, a port taken), the
        gateway serves the village without metrics and says so: villagers must not lose
        the internet over the province's monitoring."""
        from gateway.metrics import GatewayMetrics, MetricsListener

        assert self.engine is not None and self.uplink is not None
        uplink = self.uplink
        self.metrics = GatewayMetrics(
            self.engine,
            list(self.config.tiers),
            self.config.village.name,
            uplink=uplink.status,
            ticks=lambda: self.ticks,
        )
        listen = self.config.gateway.metrics_listen
        try:
            self.metrics_listener = MetricsListener(listen, self.metrics)
        except OSError as exc:
            log.error("metrics: cannot listen on %s (%s): running without them", listen, exc)
            self.metrics = None
            return
        self.metrics_listener.start()

    def _tick(self) -> None:
        assert self.engine is not None
        try:
            # Before the tick: the engine's ClockWatch sees a step made here at once.
            self.collector_clock.check()
        except OSError as exc:  # the state folder unreadable: next time
            log.warning("collector's time: %s", exc)
        try:
            started = time.perf_counter()
            report = self.engine.tick()
            if self.metrics is not None:
                self.metrics.tick(time.perf_counter() - started, self.engine.tick_phases)
            self.ticks += 1
            self.last_tick_error = None
            for sid, reason in report.ended:
                log.info("session %d ended: %s", sid, reason)
        except KernelError as exc:
            # Keep serving: the next tick reconciles again.
            self.last_tick_error = exc.message
            log.error("tick: %s", exc.message)
        except SQLAlchemyError as exc:
            if is_storage_full(exc):
                # Sessions keep forwarding; their bytes wait in memory for the next flush.
                self.last_tick_error = "storage full"
                log.error("tick: storage full: accounting kept in memory until there is room")
            else:
                self.last_tick_error = str(exc).splitlines()[0]
                log.error("tick: database: %s", self.last_tick_error)
        self.checkpoint_wal()
        self.expire_stock()
        self.freed_memory.due()
        self.check_memory_ceiling()
        try:
            self.policies.check_inbox()
        except (KernelError, SQLAlchemyError) as exc:  # kept already: the next start applies it
            log.error("policy: applying failed: %s", exc)
        self.mirror_dns_filter()

    def checkpoint_wal(self) -> None:
        """Copy the WAL back into the database once 1,000 pages wait, here, after the tick
        and outside the engine's lock, instead of inside whichever login's commit crossed
        them (``autocheckpoint=False`` in :meth:`run`): an authorization meanwhile waits for
        none of its writes and fsyncs. Passive: a portal worker's read in progress is not
        waited for, its part is copied next time. On a failure (a full disk) the WAL keeps
        everything and the next tick tries again; said once, not every tick."""
        if self.db is None:
            return
        try:
            checkpoint_if_due(self.db)
        except SQLAlchemyError as exc:
            failure = "storage full" if is_storage_full(exc) else str(exc).splitlines()[0]
            if failure != self.checkpoint_failure:
                log.error("checkpoint: %s: the WAL keeps everything, tried again", failure)
            self.checkpoint_failure = failure
            return
        if self.checkpoint_failure is not None:
            log.info("checkpoint: working again")
            self.checkpoint_failure = None

    def check_memory_ceiling(self) -> None:
        size = self.memory_ceiling.exceeded()
        if size is None or self.stopping.is_set():
            return
        log.warning(
            "resident memory %.0f MB is past [gateway] restart_above_mb = %d: stopping to be "
            "started again (sessions are kept)",
            size,
            self.memory_ceiling.limit_mb,
        )
        self.exit_status = EXIT_MEMORY_CEILING
        self.stopping.set()

    def mirror_dns_filter(self) -> None:
        """The nftables switch of DNS filtering follows the resolvers' files in force: on
        once the blocklist is in dnsmasq, off once it is out; nothing while a list is
        awaited (the filter stays as it was)."""
        if self.dns is None or self.datapath is None:
            return
        self.dns.retry()
        on = self.dns.settled_filter()
        if on is None or on == self.datapath.layout.dns_filter:
            return
        try:
            self.datapath.set_dns_filter(on)
            log.info("DNS filtering %s for logged-in devices", "on" if on else "off")
        except KernelError as exc:
            log.error("DNS filtering: %s", exc.message)

    def expire_stock(self, now: float | None = None) -> int:
        """At most once per ``STOCK_EXPIRY_SECONDS``: withdraw unsold vouchers past their shelf
        life (audited as ``system``). Returns how many were withdrawn."""
        now = time.monotonic() if now is None else now
        if self.db is None or now < self.next_stock_expiry:
            return 0
        self.next_stock_expiry = now + STOCK_EXPIRY_SECONDS
        if self.clock_synced() is False:
            # A shelf life is a date in the calendar: on a clock nobody has set (a Pi without
            # a real-time clock, its uplink down) a year ahead would withdraw all the stock
            # at once. It waits until the clock is synchronised; nothing is lost meanwhile.
            if not self.stock_waits_for_clock:
                log.warning("clock not synchronised: shelf-life withdrawal waits for it")
                self.stock_waits_for_clock = True
            self.purge_attempts()
            return 0
        self.stock_waits_for_clock = False
        try:
            n = expire_unsold(self.db, clock=self.clock)
        except SQLAlchemyError as exc:  # the next minute tries again
            log.error("stock expiry: database: %s", str(exc).splitlines()[0])
            n = 0
        if n:
            log.info("%d unsold vouchers past their shelf life withdrawn", n)
        self.purge_attempts()
        return n

    def purge_attempts(self) -> int:
        """Old rows of the brakes on guessing (called with the stock expiry, once a
        minute). Returns how many were deleted."""
        try:
            purged = purge_attempts(self.db, clock=self.clock)
        except SQLAlchemyError as exc:  # the next minute tries again
            log.error("attempt purge: database: %s", str(exc).splitlines()[0])
            return 0
        if purged.total:
            log.info("purged %s", purged)
        return purged.total


def teardown(config: Config) -> None:
    """Remove the gateway's table and HTB trees (``hotspot gateway teardown``)."""
    dp = DataPath(config)
    try:
        dp.remove()
    finally:
        dp.close()
