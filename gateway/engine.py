"""The session engine: authorize, expire, account and reconcile.

The database is the desired state; the kernel is made to match it. Every public method takes
the engine lock, so the control socket's threads and the tick never interleave.

Byte counters come from the HTB classes (one dump per direction per tick) and are kept in
memory between flushes: the database sees at most one write transaction per
``gateway.flush_seconds`` in steady state, plus one at each session end.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import ipaddress
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Engine as DbEngine
from sqlalchemy import Table, bindparam, func, insert, or_, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from gateway import shaping
from gateway.last_readings import LastReadings
from gateway.memory import collector_paused
from gateway.operation_lock import OperationLock
from gateway.reconcile import Plan, Pool, Snapshot, Wanted, pool_of
from gateway.reconcile import plan as make_plan
from gateway.tc import ClassReading
from hotspot.config import Config, Tier
from hotspot.errors import ErrorCode, KernelError, NotFound, Refused, UsageError
from hotspot.identity import macs_of, macs_of_running
from hotspot.mac import normalize_mac
from hotspot.model import (
    ClientSession,
    DailyUsage,
    Device,
    DeviceIdentityMac,
    EndReason,
    HourlyUsage,
    Package,
    Source,
    TrustedDevice,
    Voucher,
    VoucherBatch,
    VoucherDevice,
    VoucherState,
)
from hotspot.protocol import (
    Allowance,
    BlockedDevice,
    BlockResult,
    ClientInfo,
    SessionInfo,
    TrustedDeviceInfo,
    UnblockResult,
    UntrustResult,
)
from hotspot.speed_schedule import Speed, next_edge, speed_at
from hotspot.timeutil import (
    ClockWatch,
    MonotonicStep,
    iso,
    local_day,
    local_time,
    naive_utc,
    utcnow,
)
from hotspot.units import MB
from hotspot.vouchers.online import OnlineTerms, add_online_seconds, online_terms

log = logging.getLogger(__name__)

PACKETS_WRAP = 1 << 32

# Online time: one tick may charge at most this many tick intervals (a stalled process is
# not charged for the time it did not look).
ONLINE_STEP_TICKS = 3

# The tier a trusted device may be given besides the configured ones, unless the
# configuration defines a tier of that name itself: no shaping below the uplink's own rates,
# no session or idle timeout, no daily allowance.
UNLIMITED_TIER = "unlimited"


class DataPathPort(Protocol):
    """What the engine needs from the kernel (the real one is gateway.datapath.DataPath)."""

    def install(
        self, wanted: list[Wanted], blocked: set[str], pool: Pool | None = None
    ) -> None: ...
    def snapshot(
        self,
        with_nft: bool = True,
        readings: tuple[dict[int, ClassReading], dict[int, ClassReading]] | None = None,
        login_state: bool = True,
    ) -> Snapshot: ...
    def counters(
        self, minors: Collection[int] | None = None
    ) -> tuple[dict[int, ClassReading], dict[int, ClassReading]]: ...
    def class_counters(self, minor: int) -> tuple[ClassReading | None, ClassReading | None]: ...
    def apply(self, plan: Plan) -> dict[int, tuple[ClassReading | None, ClassReading | None]]: ...
    def mac_of(self, ip: str) -> str | None: ...
    def ip_of(self, mac: str) -> str | None: ...
    def neighbour_table(self) -> dict[str, str]: ...
    def macs_seen_at(self, ip: str) -> set[str]: ...
    def portal_peers(self) -> dict[tuple[str, str], float]: ...


class _Neighbours:
    """The LAN's neighbour table (ip → mac), dumped when first asked and then kept: what one
    tick admits (trusted devices, returning ones) shares a single dump."""

    def __init__(self, dp: DataPathPort):
        self._dp = dp
        self._table: dict[str, str] | None = None

    def table(self) -> dict[str, str]:
        if self._table is None:
            self._table = self._dp.neighbour_table()
        return self._table

    def ips_of(self, macs: set[str]) -> dict[str, str]:
        """mac → ip of those of ``macs`` that are on the LAN."""
        return {mac: ip for ip, mac in self.table().items() if mac in macs}


@dataclass
class _Live:
    """In-memory accounting of one running session since the last flush."""

    session_id: int
    mac: str
    ip: str
    tier: str
    minor: int
    voucher_id: int | None = None
    rate_down_bps: int = 0  # over the last tick
    rate_up_bps: int = 0
    bytes_down: int = 0  # not yet flushed
    bytes_up: int = 0
    last_activity: dt.datetime | None = None


@dataclass(frozen=True)
class _Resumable:
    """A device whose voucher or free-tier session idled out (it left): let out again,
    without the portal, when it is used again (its frames reach the portal: see
    :meth:`SessionEngine._admit_resumable`) while what it had is still valid."""

    tier: str
    voucher_id: int | None  # None: the free tier, accepted on ``day``
    day: dt.date  # the local day its session started
    until: dt.datetime | None  # the voucher's end (the free tier: the end of ``day``)
    # time.monotonic() when it was remembered: only a request after it is a sign of use (the
    # kernel's clock, not the engine's, since the ages of ``portal_peers`` are the kernel's).
    left_at: float = 0.0


@dataclass(slots=True)
class _Pending:
    seconds: float = 0.0
    bytes_down: int = 0
    bytes_up: int = 0


# What a device with nothing counted since the last flush has pending: read, never written.
_NOTHING_PENDING = _Pending()


@dataclass(slots=True)
class _Row:
    """A session's columns, read with one Core select (the tick, a login): what the ORM
    object gives, without its construction, its identity map and its expiry at commit —
    those cost the tick tens of milliseconds per thousand sessions under the engine lock.
    Writes go through Core statements (the flush) or the ORM object of the one session
    concerned (an end: its hooks get that)."""

    id: int
    mac: str
    ip: str
    tier: str
    source: Source
    down_kbps: int
    up_kbps: int
    idle_minutes: int
    started_at: dt.datetime
    expires_at: dt.datetime | None
    last_activity_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: EndReason | None
    bytes_down: int
    bytes_up: int
    bytes_limit: int | None
    voucher_id: int | None


# The columns of _Row, in its fields' order.
_ROW_COLUMNS = tuple(getattr(ClientSession, name) for name in _Row.__dataclass_fields__)

# A session as the engine reads it: a _Row, or the ORM object where one is at hand.
AnySession = ClientSession | _Row

# The statements of a login and a tick, built once: building a statement (coercions, its
# cache key) cost more than SQLite's running it.
_RUNNING = select(*_ROW_COLUMNS).where(ClientSession.ended_at.is_(None))
# The device's and the address's: two index searches (a plain OR of the two made SQLite
# scan every running session — tens of milliseconds at 10,000).
_RUNNING_OF = union_all(
    _RUNNING.where(ClientSession.mac == bindparam("mac")),
    _RUNNING.where(ClientSession.ip == bindparam("ip"), ClientSession.mac != bindparam("mac")),
)
_SESSIONS = cast(Table, ClientSession.__table__)
# The flush's usage upserts, by (table, its key columns, PostgreSQL?): see _add_usage.
_USAGE_UPSERTS: dict[tuple[str, tuple[str, ...], bool], Any] = {}
_DEVICE_BLOCKED = select(Device.blocked).where(Device.mac == bindparam("mac"))
_INSERT_SESSION = insert(_SESSIONS).returning(_SESSIONS.c.id)
_USAGE_OF_DAY = select(
    DailyUsage.mac, DailyUsage.tier, DailyUsage.seconds, DailyUsage.bytes_down, DailyUsage.bytes_up
).where(DailyUsage.day == bindparam("day"))
_USAGE_OF_MACS = _USAGE_OF_DAY.where(DailyUsage.mac.in_(bindparam("macs", expanding=True)))
# The MACs of one MAC's identity (hotspot/identity.py), built once: a login asks it of one
# MAC, and macs_of() builds its IN statements anew at every call (cProfile: more than the
# rest of the login's statements together).
_IDENTITY_MACS = select(DeviceIdentityMac.mac).where(
    DeviceIdentityMac.identity_id
    == select(DeviceIdentityMac.identity_id)
    .where(DeviceIdentityMac.mac == bindparam("mac"))
    .scalar_subquery()
)


def _device_seen_stmt(upsert: Callable[[Table], Any]) -> Any:
    table = cast(Table, Device.__table__)
    now: Any = bindparam("now")
    stmt = upsert(table).values(mac=bindparam("mac"), first_seen=now, last_seen=now, blocked=False)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.mac], set_={"last_seen": now})
    return stmt.returning(table.c.blocked)


# [SQLite, PostgreSQL]
_DEVICE_SEEN = (_device_seen_stmt(sqlite_insert), _device_seen_stmt(pg_insert))


@dataclass(slots=True)
class _Usage:
    """A device's usage row of a day and tier (seconds and bytes), read with Core."""

    seconds: int
    bytes_down: int
    bytes_up: int


# Called inside the engine's database transaction (so what they write commits or rolls back
# with the session change): a session's start, its end, and each tick with the running ones.
StartHook = Callable[[Session, ClientSession, dt.datetime], None]
EndHook = Callable[[Session, ClientSession, EndReason, dt.datetime], None]
TickHook = Callable[[Session, "builtins.list[ClientSession]", dt.datetime], None]


# The tick's work under the engine lock comes in slices (issue #12: a login never waits
# for it more than 5 ms): Python work of at most this long, then the lock is free again ...
TICK_SLICE_SECONDS = 0.002
# ... writes of at most this many rows per transaction (SQLite's write lock is a login's
# too: its commit waits for the tick's; 200 usage rows' upsert took 8 ms at load 15) ...
FLUSH_SLICE_ROWS = 100
# ... sessions ended (and taken out of the kernel) per slice ...
END_SLICE_SESSIONS = 16
# ... and between two slices the tick thread sleeps this long, so that a waiting login gets
# the lock and the interpreter first (a thread that releases a lock and takes it again at
# once would usually win it back).
SLICE_PAUSE_SECONDS = 0.0002
# An explicit reconcile works its plan out without the lock this many times before it gives
# up on a quiet moment and holds the lock for the whole of it.
RECONCILE_ATTEMPTS = 3

_FLUSH_SESSIONS = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("sid"))
    .values(
        bytes_down=_SESSIONS.c.bytes_down + bindparam("down"),
        bytes_up=_SESSIONS.c.bytes_up + bindparam("up"),
        last_activity_at=bindparam("last"),
    )
)

# A clock step moves the vouchers first used since the engine started (_follow_step): as
# Core rows, this many at a time. As ORM objects, all at once, a step's peak grew with every
# voucher sold since the start (3,387 after 13 soak midnights), and each higher peak left
# Python's allocator with arenas that a few long-lived objects kept (docs/reliability.md).
STEP_VOUCHER_CHUNK = 500
_VOUCHERS = cast(Table, Voucher.__table__)
_STEPPED_VOUCHERS = (
    select(_VOUCHERS.c.id, _VOUCHERS.c.first_used_at, _VOUCHERS.c.expires_at)
    .where(
        # A merged one too: a top-up in flight merged it, and its session still runs on its
        # end until the top-up's authorize (or the undo of a refused one) — unmoved, that end
        # ended the session at once (the soak found it).
        _VOUCHERS.c.state.in_((VoucherState.ACTIVE.value, VoucherState.MERGED.value)),
        _VOUCHERS.c.first_used_at >= bindparam("since"),
        # Before the step (on the old clock): not one the portal stamped on the new clock
        # since. Clear-cut for a step forward; a step back leaves one tick where the two
        # overlap (docs/reliability.md).
        _VOUCHERS.c.first_used_at < bindparam("before"),
        _VOUCHERS.c.id > bindparam("after"),
    )
    .order_by(_VOUCHERS.c.id)
    .limit(bindparam("chunk"))
)
_MOVE_VOUCHER = (
    update(_VOUCHERS)
    .where(_VOUCHERS.c.id == bindparam("vid"))
    .values(first_used_at=bindparam("first"), expires_at=bindparam("end"))
)


@dataclass
class _TickRead:
    """What a tick read from the database without the engine lock (see ``tick``)."""

    active: list[_Row]
    blocked: set[str]
    terms: dict[int, OnlineTerms]  # the running online-time vouchers'
    voucher_db: dict[int, int]  # voucher id → its bytes as written (ended and flushed)
    usage: dict[tuple[str, str], _Usage]  # the day's usage rows of the running identities
    groups: dict[str, frozenset[str]]
    vouchers: dict[int, int] = field(default_factory=dict)  # with the unflushed bytes

    def vouchers_with_live(self, live: dict[int, _Live]) -> dict[int, int]:
        """The vouchers' bytes with what their running sessions counted since the flush
        (under the lock: ``live`` changes with every login and kick)."""
        used = dict(self.voucher_db)
        if used:
            for one in live.values():
                if one.voucher_id in used:
                    used[one.voucher_id] += one.bytes_down + one.bytes_up
        return used


@dataclass
class TickReport:
    ended: list[tuple[int, str]] = field(default_factory=list)
    plan: str = ""
    flushed: bool = False


class SessionEngine:
    def __init__(
        self,
        config: Config,
        db: DbEngine,
        datapath: DataPathPort,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.db = db
        self.dp = datapath
        self.clock = clock
        self.network = config.network.lan_network
        self.gateway_ip = config.network.gateway_ip  # (parsed once: it was per request)
        # The DHCP pool's classes exist from start-up (part of the desired state): a login
        # finds its class there, a session's end puts it back to the pool's rates.
        self.pool = pool_of(config)
        # (an operation that changed the kernel and then failed makes the next look whole)
        self.lock = OperationLock(lambda: self._generation, self._look_at_all_next)
        self.live: dict[int, _Live] = {}  # session id → accounting
        self.pending: dict[tuple[str, dt.date, str], _Pending] = {}  # (mac, local day, tier)
        self.pending_hourly: dict[tuple[str, dt.datetime], _Pending] = {}  # (mac, UTC hour)
        self._last_raw = LastReadings()  # every class's last reading (the pool's idle ones too)
        # Sessions ended since the last kernel change, by class minor: what their classes
        # pass until the change removes them is theirs (see _count_final).
        self._ending: dict[int, _Live] = {}
        self._late: dict[int, _Live] = {}  # session id → bytes counted after its end
        # Pool classes whose session ended, by minor: HTB counts a packet when it leaves the
        # class, so what was queued at the session's final reading leaves (and is counted)
        # afterwards. Until a tick sees the class pass nothing, or the next session takes
        # the class, what it passes is the ended session's (see _settle_drain).
        self._draining: dict[int, _Live] = {}
        # During a tick: one query for the day's usage rows instead of one per session.
        self._day_rows: tuple[dt.date, dict[tuple[str, str], _Usage]] | None = None
        self._groups: dict[str, frozenset[str]] | None = None  # MAC → its identity's MACs
        self._last_tick: dt.datetime | None = None
        self.tick_phases: dict[str, float] = {}  # the last tick's phases, in milliseconds
        self._generation = 0  # bumped by every kernel change
        # The classes kernel changes touched since the tick's kernel read began.
        self._touched: set[int] = set()
        self._last_flush = time.monotonic()
        self._monotonic = monotonic
        self._last_full_look: float | None = None  # (monotonic) the tick's last whole read
        self.started_at: dt.datetime | None = None
        self.end_hooks: builtins.list[EndHook] = []  # RADIUS accounting (gateway/radius.py)
        self.tick_hooks: builtins.list[TickHook] = []
        # Speed schedules: the rates of each scheduled tier, valid from _speeds_at until the
        # next window edge (then, or when the clock went back, they are worked out again);
        # and those the last tick put into the kernel, to tell an edge from a drift.
        self._speeds: dict[str, Speed] = {}
        self._speeds_at: dt.datetime | None = None
        self._speeds_next: dt.datetime | None = None
        self._ticked_speeds: dict[str, tuple[int, int]] = {}
        # Online-time vouchers (hotspot/vouchers/online.py): seconds from the monotonic
        # clock, never the wall clock, kept per voucher until the flush writes them.
        self.online_clock = MonotonicStep(
            ONLINE_STEP_TICKS * config.gateway.tick_seconds, monotonic
        )
        self.online_pending: dict[int, float] = {}  # voucher id → seconds not yet written
        # Time without a real-time clock (issue #11, docs/reliability.md): the seconds a tick
        # charges to the free tier's daily minutes come from the monotonic clock; a step of
        # the wall clock is seen by the watch and moves what was stamped before it.
        # Not capped: a tick that came late (a busy Pi) still charges the time that passed.
        self.tick_clock = MonotonicStep(float("inf"), monotonic)
        self.clock_watch = ClockWatch(config.gateway.clock_step_seconds, clock, monotonic)
        self._epoch_start: dt.datetime | None = None  # the engine's start, moved by each step
        self.last_step: tuple[dt.datetime, float] | None = None  # (when, seconds) for status
        self._day: dt.date | None = None  # the usage day: never goes back (see today())
        self._online: dict[int, OnlineTerms] = {}  # the running online-time vouchers
        # MAC → what it may resume (see _admit_resumable): kept in memory, so that a tick
        # asks the database only about those of them that are back on the LAN.
        self.resumable: dict[str, _Resumable] = {}
        # Read by the metrics at scrape time (gateway/metrics.py), never for decisions: bytes
        # charged to sessions (down, up), the last tick's phases (tick_phases, above), and
        # the sizes of the kernel's sets and maps as that tick read them.
        self.charged_bytes = [0, 0]
        self.kernel_sizes: dict[str, int] = {}

    # -- helpers ---------------------------------------------------------------------------

    def local_day(self, now: dt.datetime) -> dt.date:
        return local_day(now, self.config.village.tz)

    def next_reset(self, now: dt.datetime) -> dt.datetime:
        """The next local midnight, as naive UTC."""
        return self._midnight_after(local_time(now, self.config.village.tz).date())

    def _midnight_after(self, day: dt.date) -> dt.datetime:
        tz = self.config.village.tz
        return naive_utc(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz))

    def today(self, now: dt.datetime) -> dt.date:
        """The day the daily allowances are counted on: the local day of ``now``, except that
        it never goes back by a day — a clock stepped back across midnight (NTP correcting a
        clock that ran fast) stays on the later day, so the reset happens once per local day,
        never twice. A step back of more than a day (a clock that was wildly wrong, a year
        ahead say) is followed: no allowance is given twice by that, since the days it returns
        to keep the usage counted on them."""
        day = self.local_day(now)
        if self._day is None or day >= self._day or (self._day - day).days > 1:
            self._day = day
        return self._day

    def _check_ip(self, ip: Any) -> str:
        try:
            addr = ipaddress.IPv4Address(ip)
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise UsageError(f"ip: not an IPv4 address: {ip!r}") from None
        net = self.network
        if addr not in net or addr in (
            net.network_address,
            net.broadcast_address,
            self.gateway_ip,
        ):
            raise UsageError(f"ip: {addr} is not a client address of {net}")
        return str(addr)

    def _wanted(self, s: AnySession, now: dt.datetime | None = None) -> Wanted:
        speed = self._speed_of(s, self.clock() if now is None else now)
        return Wanted(ip=s.ip, mac=s.mac, down_kbps=speed.down_kbps, up_kbps=speed.up_kbps)

    def _scheduled_speeds(self, now: dt.datetime) -> dict[str, Speed]:
        """The rates in force now of every tier with a schedule. Worked out once per window
        edge: between two edges nothing can change, unless the clock jumped back."""
        if (
            self._speeds_at is None
            or now < self._speeds_at
            or (self._speeds_next is not None and now >= self._speeds_next)
        ):
            tz = self.config.village.tz
            scheduled = [t for t in self.config.tiers.values() if t.schedule]
            self._speeds = {t.name: speed_at(t, now, tz) for t in scheduled}
            self._speeds_at, self._speeds_next = now, next_edge(scheduled, now, tz)
        return self._speeds

    def _speed_of(self, s: AnySession, now: dt.datetime) -> Speed:
        """The rates a session runs at now. A session on its tier's own rates follows the
        tier's schedule; one whose rates were set for it alone (a RADIUS grant or CoA, an
        operator's change_limits) keeps them whatever the time."""
        tier = self.config.tiers.get(s.tier)
        if (
            s.ended_at is not None
            or tier is None
            or not tier.schedule
            or (s.down_kbps, s.up_kbps) != (tier.down_kbps, tier.up_kbps)
        ):
            return Speed(s.down_kbps, s.up_kbps)
        speed = self._scheduled_speeds(now).get(tier.name)
        # (None: the tier got its schedule after the rates were worked out, as a test does.)
        return speed if speed is not None else speed_at(tier, now, self.config.village.tz)

    def _speed_edges(self, now: dt.datetime) -> builtins.list[str]:
        """The scheduled tiers whose rates changed since the last tick (a window began or
        ended): their classes change in this tick's reconcile, expectedly."""
        speeds = {n: (sp.down_kbps, sp.up_kbps) for n, sp in self._scheduled_speeds(now).items()}
        changed = [n for n, r in speeds.items() if self._ticked_speeds.get(n, r) != r]
        self._ticked_speeds = speeds
        for name in changed:
            sp = self._speeds[name]
            log.info(
                "speed schedule: tier %s now at %d/%d kbit/s (%s)",
                name,
                sp.down_kbps,
                sp.up_kbps,
                f"window {sp.window.label} until {iso(sp.until)}" if sp.window else "its own rates",
            )
        return changed

    def _change(
        self,
        before: Iterable[Wanted],
        after: Iterable[Wanted],
        block: Iterable[str] = (),
        unblock: Iterable[str] = (),
    ) -> Plan:
        """The plan that turns ``before`` into ``after`` for just these clients: O(1) in the
        number of other sessions. A pool address's class is there already, at the pool's
        rates when no session is at it (the tick's reconcile sees to that)."""
        after = list(after)
        snap = Snapshot(pinned={w.ip: w.mac for w in before})
        touched = {shaping.client_minor(w.ip, self.network) for w in (*before, *after)}
        pool = self.pool.only(touched)
        for minor, (down, up) in pool.items():
            snap.down_ceil[minor], snap.up_ceil[minor] = down, up
        for w in before:
            minor = shaping.client_minor(w.ip, self.network)
            snap.authorized.add((w.ip, w.mac))
            snap.down_map[w.ip] = snap.up_map[w.ip] = shaping.classid_str(minor)
            snap.down_ceil[minor] = w.down_kbps
            snap.up_ceil[minor] = w.up_kbps
        snap.blocked = set(unblock)
        return make_plan(after, set(block), snap, self.network, pool)

    def _active(self, db: Session) -> list[ClientSession]:
        return list(db.scalars(select(ClientSession).where(ClientSession.ended_at.is_(None))))

    def _device_seen(self, db: Session, mac: str, now: dt.datetime) -> bool:
        """Note ``mac`` as seen now (its row made if new): one INSERT … ON CONFLICT DO
        UPDATE … RETURNING, SQLite and PostgreSQL alike. Returns whether it is blocked."""
        conn = db.connection()
        stmt = _DEVICE_SEEN[conn.dialect.name == "postgresql"]
        return bool(conn.execute(stmt, {"mac": mac, "now": now}).scalar_one())

    def _rows(self, db: Session, mac: str | None = None, ip: str | None = None) -> list[_Row]:
        """The running sessions (those of ``mac`` or at ``ip``, if given), as plain rows:
        one Core select, built once (building it cost more than running it)."""
        conn = db.connection()
        if mac is None and ip is None:
            return [_Row(*r) for r in conn.execute(_RUNNING)]
        return [_Row(*r) for r in conn.execute(_RUNNING_OF, {"mac": mac, "ip": ip})]

    def _blocked(self, db: Session) -> set[str]:
        return set(db.scalars(select(Device.mac).where(Device.blocked.is_(True))))

    @contextlib.contextmanager
    def _usage_of(
        self,
        db: Session,
        day: dt.date,
        mac: str | None = None,
        known: bool = True,
        running: Iterable[str] | None = None,
    ) -> Iterator[None]:
        """Load the day's usage rows (of one device, or of all) in one query for the block;
        a device never seen before (``known=False``) has none to load. ``running``: the
        MACs of the running sessions, when the caller has them (saves loading them again)."""
        rows, groups = self._day_usage(db, day, mac, known, running)
        self._day_rows = (day, rows)
        self._groups = groups
        try:
            yield
        finally:
            self._day_rows = None
            self._groups = None

    def _day_usage(
        self,
        db: Session,
        day: dt.date,
        mac: str | None,
        known: bool,
        running: Iterable[str] | None,
    ) -> tuple[dict[tuple[str, str], _Usage], dict[str, frozenset[str]]]:
        """The day's usage rows (of one device's identity, or of all the running devices')
        and the identities' MACs: what :meth:`_usage_of` lends to :meth:`_used`."""
        rows: dict[tuple[str, str], _Usage] = {}
        # The free allowance follows the device identity (hotspot/identity.py): a MAC's
        # usage is counted together with every other MAC of its identity.
        if mac is not None:
            same = db.connection().execute(_IDENTITY_MACS, {"mac": mac}).scalars()
            groups = {mac: frozenset({mac, *same})}
        else:  # (``running`` is every running session's MAC, read in this transaction)
            if running is None:
                running = {s.mac for s in self._rows(db)}
            groups = macs_of_running(db.connection(), running)
        if known or len(groups.get(mac or "", ())) > 1:
            conn = db.connection()
            found = (
                conn.execute(_USAGE_OF_DAY, {"day": day})
                if mac is None
                else conn.execute(_USAGE_OF_MACS, {"day": day, "macs": sorted(groups[mac])})
            )
            rows = {(m, t): _Usage(sec, down, up) for m, t, sec, down, up in found}
        return rows, groups

    def _voucher_db_bytes(self, db: Session, voucher_ids: set[int]) -> dict[int, int]:
        """Bytes written so far for each voucher, over all its sessions (the running ones'
        unflushed bytes not included)."""
        if not voucher_ids:
            return {}
        rows = db.execute(
            select(
                ClientSession.voucher_id,
                func.sum(ClientSession.bytes_down + ClientSession.bytes_up),
            )
            .where(ClientSession.voucher_id.in_(voucher_ids))
            .group_by(ClientSession.voucher_id)
        )
        used = {vid: int(total or 0) for vid, total in rows if vid is not None}
        return {vid: used.get(vid, 0) for vid in voucher_ids}

    def _voucher_bytes(self, db: Session, voucher_ids: set[int]) -> dict[int, int]:
        """Bytes used so far by each voucher over all its sessions, ended and running."""
        used = self._voucher_db_bytes(db, voucher_ids)
        for live in self.live.values():
            if live.voucher_id in voucher_ids:
                used[live.voucher_id] += live.bytes_down + live.bytes_up
        return used

    def _used(self, db: Session, mac: str, day: dt.date, tier: str) -> _Pending:
        """Today's use of ``tier`` by the device ``mac`` — over all the MACs of its identity."""
        group = self._groups.get(mac) if self._groups is not None else None
        if group is None:
            group = macs_of(db.connection(), [mac])[mac]
        # The tick asks this of every session: the day's rows looked up once, sums in locals.
        day_rows = (
            self._day_rows[1] if self._day_rows is not None and self._day_rows[0] == day else None
        )
        pending = self.pending
        seconds, down, up = 0.0, 0, 0
        for one in group:
            row: _Usage | DailyUsage | None
            if day_rows is not None:
                row = day_rows.get((one, tier))
            else:
                row = db.get(DailyUsage, (one, day, tier))
            p = pending.get((one, day, tier), _NOTHING_PENDING)
            seconds += p.seconds
            down += p.bytes_down
            up += p.bytes_up
            if row is not None:
                seconds += row.seconds
                down += row.bytes_down
                up += row.bytes_up
        return _Pending(seconds, down, up)

    def allowance(self, db: Session, mac: str, tier: Tier, now: dt.datetime) -> Allowance:
        """What is left of today's fair-use allowance on ``tier`` (None = unlimited)."""
        if not (tier.daily_minutes or tier.daily_mb):
            return {
                "seconds_left": None,
                "bytes_left": None,
                "seconds_used": None,
                "bytes_used": None,
                "resets_at": iso(self._midnight_after(self.today(now))),
                "exhausted": False,
            }
        used = self._used(db, mac, self.today(now), tier.name)
        seconds_left = bytes_left = None
        if tier.daily_minutes:
            seconds_left = max(0, int(tier.daily_minutes * 60 - used.seconds))
        if tier.daily_mb:
            bytes_left = max(0, tier.daily_mb * MB - used.bytes_down - used.bytes_up)
        return {
            "seconds_left": seconds_left,
            "bytes_left": bytes_left,
            "seconds_used": int(used.seconds),
            "bytes_used": used.bytes_down + used.bytes_up,
            "resets_at": iso(self._midnight_after(self.today(now))),
            "exhausted": seconds_left == 0 or bytes_left == 0,
        }

    def _exhausted(self, db: Session, mac: str, tier: Tier, day: dt.date) -> bool:
        """``allowance(…)["exhausted"]`` on ``day`` alone: the tick asks it of every session,
        and the rest of the answer (dates, ISO strings) cost more than the question."""
        if not (tier.daily_minutes or tier.daily_mb):
            return False
        used = self._used(db, mac, day, tier.name)
        if tier.daily_minutes and int(tier.daily_minutes * 60 - used.seconds) <= 0:
            return True
        return bool(tier.daily_mb) and tier.daily_mb * MB - used.bytes_down - used.bytes_up <= 0

    def _end(self, db: Session, sess: ClientSession, reason: EndReason, now: dt.datetime) -> None:
        live = self.live.pop(sess.id, None)
        if live is not None:
            self._count_final(live, now)
            sess.bytes_down += live.bytes_down
            sess.bytes_up += live.bytes_up
            if live.last_activity:
                sess.last_activity_at = live.last_activity
            live.bytes_down = live.bytes_up = 0
            self._ending[live.minor] = live
        sess.ended_at = now
        sess.end_reason = reason
        self._remember_resumable(sess, reason)
        log.info("session %d of %s at %s ended: %s", sess.id, sess.mac, sess.ip, reason.value)
        for hook in self.end_hooks:
            hook(db, sess, reason, now)

    def _count_final(self, live: _Live, now: dt.datetime) -> None:
        """Count what the session's classes passed since the last tick read them, as it
        ends: its successor at the same address (the class stays) counts on from this
        reading. A class that goes passes a little more (until the kernel change has
        forgotten the session's connections, tens of milliseconds on a busy Pi): the change
        reads it once more just before removing it, and :meth:`_apply` counts that too.
        One netlink request per direction, whatever the number of sessions."""
        try:
            down, up = self.dp.class_counters(live.minor)
        except KernelError as exc:  # the session ends anyway; its last tick's bytes stand
            log.warning("final counters of session %d: %s", live.session_id, exc)
            return
        got = (self._delta("down", live.minor, down), self._delta("up", live.minor, up))
        hour = now.replace(minute=0, second=0, microsecond=0)
        self._charge(live, got, 0.0, (now, self.today(now), hour))

    def _track(self, sess: AnySession, baseline: bool) -> None:
        """``baseline``: the class existed before the session, and counts on from its last
        reading (the previous session's final one, or start-up's); a class never read, or
        brand-new, counts from zero."""
        minor = shaping.client_minor(sess.ip, self.network)
        self.live[sess.id] = _Live(sess.id, sess.mac, sess.ip, sess.tier, minor, sess.voucher_id)
        self._draining.pop(minor, None)  # the class is this session's from here on
        if not baseline:  # (a class never read reads as zero: it counts from there too)
            for direction in ("down", "up"):
                self._last_raw.set(direction, minor, 0, 0)

    # -- start-up --------------------------------------------------------------------------

    def start(self) -> None:
        """End what expired while we were away, then put every valid session back into the
        kernel in one go (the table is replaced atomically, with its elements)."""
        with self.lock:
            now = self.clock()
            self.started_at = now
            with Session(self.db) as db, db.begin():
                for sess in self._active(db):
                    if sess.expires_at is not None and sess.expires_at <= now:
                        self._end(db, sess, EndReason.SESSION, now)
                active = self._active(db)
                blocked = self._blocked(db)
                self._speed_edges(now)
                self.dp.install([self._wanted(s, now) for s in active], blocked, self.pool)
                for sess in active:
                    self._track(sess, baseline=True)
                self._load_resumable(db, now)
                # The usage day never goes back, across a restart too (see today()).
                latest = db.scalar(select(DailyUsage.day).order_by(DailyUsage.day.desc()).limit(1))
                if latest is not None and 0 < (latest - self.local_day(now)).days <= 1:
                    self._day = latest
            down, up = self.dp.counters()
            for direction, readings in (("down", down), ("up", up)):
                for minor, r in readings.items():
                    self._last_raw.set(direction, minor, r.bytes, r.packets)
            self._last_tick = now
            self.online_clock.step()  # the baseline: the first tick counts from here
            self.tick_clock.step()
            self.clock_watch.reset(now)
            self._epoch_start = now
            log.info(
                "engine started: %d sessions restored, %d devices blocked",
                len(active),
                len(blocked),
            )

    # -- operations (the control socket's verbs) --------------------------------------------
    # Arguments arrive checked by hotspot.protocol.parse_request (types, ranges, formats);
    # what is checked here needs the configuration or the database.

    def authorize(
        self,
        *,
        ip: str | None = None,
        mac: str | None = None,
        tier: str = "free",
        source: Source = Source.FREE,
        minutes: int | None = None,
        expires_at: dt.datetime | None = None,
        bytes_limit: int | None = None,
        voucher_id: int | None = None,
        down_kbps: int | None = None,
        up_kbps: int | None = None,
        idle_minutes: int | None = None,
        on_start: StartHook | None = None,
        expect_mac: str | None = None,
    ) -> SessionInfo:
        """Let a device out. Idempotent: the same device, address, tier and voucher again
        returns the running session unchanged.

        The session ends at ``expires_at`` (naive UTC) if given, else after ``minutes``, else
        after the tier's session length. ``bytes_limit`` caps its data; with a ``voucher_id``
        it is the voucher's whole quota, shared by all the voucher's devices and sessions.
        ``down_kbps``, ``up_kbps`` and ``idle_minutes`` replace the tier's (a RADIUS server's
        grant); ``on_start`` is called with the new session inside the transaction, and a
        session started with one is never "the same again" (each login is accounted).
        ``expect_mac``: refused (``conflict``) unless that is the MAC at ``ip`` (the portal's
        MAC from its splash, already linked to the device's identity).
        """
        origin = Source(source)
        tier_cfg = self._tier(tier, trusted=origin is Source.TRUSTED)
        until = expires_at
        # The kernel's answers (who talked to the portal, which MAC is at the address: an
        # ARP probe of up to probe_timeout when the table has none) before the lock: they
        # need none, and a device that does not answer must not hold up every other login.
        seen = self._senders_if_by_address(ip, mac)
        mac, ip = self._identify(ip, mac)
        if expect_mac is not None and mac != normalize_mac(expect_mac):
            raise Refused(f"{ip} is {mac} now, not {expect_mac}", code=ErrorCode.CONFLICT)
        with self.lock:
            if seen is not None:
                self._check_requester(ip, mac, seen)
            now = self.clock()
            self._watch_clock(now)
            # Core statements, not the ORM: its identity map, autoflush and object
            # construction were most of a login's database time (bench/README.md).
            # The day's usage rows serve the allowance only: a tier without one (a voucher's,
            # usually) loads none (allowance() answers without them).
            limited = bool(tier_cfg.daily_minutes or tier_cfg.daily_mb)
            with (
                Session(self.db) as db,
                db.begin(),
                self._usage_of(db, self.today(now), mac) if limited else contextlib.nullcontext(),
            ):
                if self._device_seen(db, mac, now):
                    raise Refused(f"device {mac} is blocked", code=ErrorCode.BLOCKED)
                # A trusted device is not held to the tier's daily allowance.
                left = self.allowance(db, mac, tier_cfg, now)
                if left["exhausted"] and origin is not Source.TRUSTED:
                    raise Refused(
                        f"today's {tier} allowance of {mac} is used up",
                        code=ErrorCode.QUOTA_EXHAUSTED,
                    )
                running = self._rows(db, mac, ip)
                mine = next((r for r in running if r.mac == mac), None)
                theirs = next((r for r in running if r.ip == ip and r.mac != mac), None)
                if (
                    mine is not None
                    and mine.ip == ip
                    and mine.tier == tier_cfg.name
                    and mine.voucher_id == voucher_id
                    and on_start is None
                    and (mine.source is Source.TRUSTED) == (origin is Source.TRUSTED)
                ):
                    return self._describe(db, mine, now)
                if voucher_id is not None and until is not None and self.last_step is not None:
                    # The voucher's end as it is now: a clock step between the portal's
                    # claim and this authorize moved it (_follow_step), while the portal
                    # worked ``expires_at`` out on the old clock (the soak's redemptions
                    # refused as expired after a step). Without a step the two are equal.
                    held = db.scalar(select(Voucher.expires_at).where(Voucher.id == voucher_id))
                    until = held if held is not None else until
                # Refused before any running session ends: an end counts its bytes into
                # memory and the session row, which a refusal's rollback would lose.
                if until is None:
                    session_minutes = tier_cfg.session_minutes if minutes is None else minutes
                    until = now + dt.timedelta(minutes=session_minutes) if session_minutes else None
                elif until <= now:
                    raise Refused("that access has already expired", code=ErrorCode.EXPIRED)
                before = []
                for old in {s.id: s for s in (mine, theirs) if s is not None}.values():
                    before.append(self._wanted(old))
                    # The ORM object of the session replaced: the end hooks get it.
                    self._end(db, db.get_one(ClientSession, old.id), EndReason.REPLACED, now)
                if before:
                    db.flush()  # the ends written before the insert (one running per device)
                new = _Row(
                    id=0,
                    mac=mac,
                    ip=ip,
                    tier=tier_cfg.name,
                    source=origin,
                    down_kbps=down_kbps or tier_cfg.down_kbps,
                    up_kbps=up_kbps or tier_cfg.up_kbps,
                    idle_minutes=tier_cfg.idle_minutes if idle_minutes is None else idle_minutes,
                    started_at=now,
                    expires_at=until,
                    last_activity_at=now,
                    ended_at=None,
                    end_reason=None,
                    bytes_down=0,
                    bytes_up=0,
                    bytes_limit=bytes_limit,
                    voucher_id=voucher_id,
                )
                columns = {k: getattr(new, k) for k in _Row.__dataclass_fields__ if k != "id"}
                try:
                    new.id = db.connection().execute(_INSERT_SESSION, columns).scalar_one()
                except IntegrityError:
                    raise Refused(
                        "another authorization of this device is in progress",
                        code=ErrorCode.CONFLICT,
                    ) from None
                sess: AnySession = new
                if on_start is not None:  # (RADIUS) its hook gets the ORM object
                    sess = db.get_one(ClientSession, new.id)
                    on_start(db, sess, now)
                # What the class passed since its last session's final reading is that
                # session's; from the reading taken here on, it is this session's.
                self._settle_drain(shaping.client_minor(ip, self.network), now)
                # Kernel last: if it fails, the transaction rolls back and nothing changed.
                change = self._change(before, [self._wanted(sess)])
                self._apply(change)
                # A class that was there (the pool's, or one a session just ended at) counts
                # on from its last reading; a class made for this session counts from 0.
                made = any(c.new for c in (*change.down_set, *change.up_set))
                self._track(sess, baseline=not made)
                self.resumable.pop(mac, None)  # a session of its own now
                log.info(
                    "session %d: %s at %s authorized on %s (%s)",
                    sess.id,
                    mac,
                    ip,
                    tier_cfg.name,
                    origin,
                )
                return self._describe(db, sess, now)

    def deauthorize(
        self, *, ip: str | None = None, mac: str | None = None, reason: EndReason = EndReason.KICK
    ) -> SessionInfo:
        why = EndReason(reason)
        seen = self._senders_if_by_address(ip, mac)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                sess = self._requested_session(db, ip, mac, seen)
                self._end(db, sess, why, now)
                db.flush()
                self._apply(self._change([self._wanted(sess)], []))
                return self._describe(db, sess, now)

    def extend(self, *, mac: str | None = None, ip: str | None = None, minutes: int) -> SessionInfo:
        """Give a running session ``minutes`` more (an operator's goodwill)."""
        seen = self._senders_if_by_address(ip, mac)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                sess = self._requested_session(db, ip, mac, seen)
                if sess.expires_at is not None:
                    try:
                        sess.expires_at = max(sess.expires_at, now) + dt.timedelta(minutes=minutes)
                    except OverflowError:  # extended again and again towards the year 9999
                        raise UsageError(
                            "minutes: the session would end after the last date there is"
                        ) from None
                log.info("session %d of %s extended by %d minutes", sess.id, sess.mac, minutes)
                db.flush()
                return self._describe(db, sess, now)

    def change_limits(
        self,
        *,
        session_id: int,
        down_kbps: int | None = None,
        up_kbps: int | None = None,
        expires_at: dt.datetime | None = None,
        bytes_limit: int | None = None,
    ) -> SessionInfo:
        """New rates, end or data cap for a running session (a RADIUS CoA-Request); the HTB
        class changes at once."""
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                sess = db.get(ClientSession, session_id)
                if sess is None or sess.ended_at is not None:
                    raise NotFound("no running session for that device", code=ErrorCode.NO_SESSION)
                before = self._wanted(sess)
                sess.down_kbps = down_kbps or sess.down_kbps
                sess.up_kbps = up_kbps or sess.up_kbps
                if expires_at is not None:
                    sess.expires_at = expires_at
                if bytes_limit is not None:
                    sess.bytes_limit = bytes_limit
                db.flush()
                self._apply(self._change([before], [self._wanted(sess)]))
                log.info(
                    "session %d of %s: limits changed to %d/%d kbit/s, ends %s",
                    sess.id,
                    sess.mac,
                    sess.down_kbps,
                    sess.up_kbps,
                    iso(sess.expires_at),
                )
                return self._describe(db, sess, now)

    def apply_config(self, config: Config) -> int:
        """Take a new configuration (the province's policy laid over the local one,
        gateway/policy.py) in force now. Running sessions of a tier whose rates changed and
        that still run at the old tier's own rates (not a RADIUS grant or an operator's
        change) move to the new rates at once, classes changed in place; a new daily quota
        or idle time holds from the next tick; a running session keeps the end it was
        given. Returns how many sessions changed rates."""
        with self.lock:
            old = self.config
            now = self.clock()
            with Session(self.db) as db, db.begin():
                before: builtins.list[Wanted] = []
                moved: builtins.list[ClientSession] = []
                for sess in self._active(db):
                    was, new = old.tiers.get(sess.tier), config.tiers.get(sess.tier)
                    if was is None or new is None:
                        continue
                    if (sess.down_kbps, sess.up_kbps) != (was.down_kbps, was.up_kbps):
                        continue
                    if (new.down_kbps, new.up_kbps) == (was.down_kbps, was.up_kbps) and (
                        new.schedule == was.schedule
                    ):
                        continue
                    before.append(self._wanted(sess, now))
                    sess.down_kbps, sess.up_kbps = new.down_kbps, new.up_kbps
                    moved.append(sess)
                db.flush()
                self.config = config
                # Worked out again from the new tiers (a schedule may have come or gone).
                self._speeds_at = None
                self._ticked_speeds = {}
                if before:
                    self._apply(self._change(before, [self._wanted(s, now) for s in moved]))
            return len(before)

    def session_bytes(self, sess: ClientSession) -> tuple[int, int]:
        """(down, up) of a session so far, what is not yet flushed included."""
        live = self.live.get(sess.id) if sess.ended_at is None else None
        return (
            sess.bytes_down + (live.bytes_down if live else 0),
            sess.bytes_up + (live.bytes_up if live else 0),
        )

    def block(self, *, mac: str, reason: str = "") -> BlockResult:
        mac = normalize_mac(mac)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                device = db.get(Device, mac) or Device(mac=mac, first_seen=now, last_seen=now)
                db.add(device)
                device.blocked, device.blocked_at = True, now
                device.blocked_reason = reason[:200] or None
                sess = self._find_active(db, None, mac)
                before = []
                if sess is not None:
                    before.append(self._wanted(sess))
                    self._end(db, sess, EndReason.BLOCKED, now)
                db.flush()
                self._apply(self._change(before, [], block=[mac]))
                return {"mac": mac, "blocked": True, "ended_session": sess.id if sess else None}

    def unblock(self, *, mac: str) -> UnblockResult:
        mac = normalize_mac(mac)
        with self.lock:
            with Session(self.db) as db, db.begin():
                device = db.get(Device, mac)
                if device is None or not device.blocked:
                    raise NotFound(f"{mac} is not blocked", code=ErrorCode.NOT_BLOCKED)
                device.blocked, device.blocked_at, device.blocked_reason = False, None, None
                db.flush()
                self._apply(self._change([], [], unblock=[mac]))
                return {"mac": mac, "blocked": False}

    def client(
        self, *, ip: str | None = None, mac: str | None = None, brief: bool = False
    ) -> ClientInfo:
        """Everything the portal shows a device: who it is, its session, its allowance.
        ``brief``: who it is and its running session only (a login form's POST)."""
        # The MAC before the lock, as in authorize: a probe of a silent address takes
        # probe_timeout.
        if ip is not None:
            ip = self._check_ip(ip)
            if mac is None:
                mac = self.dp.mac_of(ip)
        elif mac is not None:
            mac = normalize_mac(mac)
        else:
            raise UsageError("ip: give ip or mac")
        with self.lock:
            now = self.clock()
            with Session(self.db) as db:
                # Core, not the ORM: the portal asks this at every splash and form.
                device = db.execute(_DEVICE_BLOCKED, {"mac": mac}).first() if mac else None
                # A device never seen before (most of a burst of new phones) has no sessions
                # and no usage: one query answers it.
                known = mac is None or device is not None
                sess = self._find_active(db, ip if mac is None else None, mac) if known else None
                if brief:
                    # No usage of every tier: a running session's own (its remaining
                    # allowance) is read only when there is one.
                    return {
                        "ip": ip,
                        "mac": mac,
                        "blocked": bool(device and device.blocked),
                        "session": self._brief_session(db, sess, now),
                        "last_session": None,
                        "allowance": {},
                    }
                with self._usage_of(db, self.today(now), mac, known=known):
                    allowances: dict[str, Allowance] = {}
                    if mac:
                        for name, tier in self.config.tiers.items():
                            allowances[name] = self.allowance(db, mac, tier, now)
                    last = None
                    if sess is None and device is not None:
                        last_s = db.scalar(
                            select(ClientSession)
                            .where(ClientSession.mac == mac)
                            .order_by(ClientSession.id.desc())
                            .limit(1)
                        )
                        last = self._describe(db, last_s, now) if last_s else None
                    return {
                        "ip": ip,
                        "mac": mac,
                        "blocked": bool(device and device.blocked),
                        "session": self._describe(db, sess, now) if sess else None,
                        "last_session": last,
                        "allowance": allowances,
                    }

    def _brief_session(
        self, db: Session, sess: ClientSession | None, now: dt.datetime
    ) -> SessionInfo | None:
        if sess is None:
            return None
        with self._usage_of(db, self.today(now), sess.mac):
            return self._describe(db, sess, now)

    def list(self) -> builtins.list[SessionInfo]:
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, self._usage_of(db, self.today(now)):
                return [
                    self._describe(db, s, now)
                    for s in sorted(self._active(db), key=lambda s: s.started_at)
                ]

    def blocked(self) -> builtins.list[BlockedDevice]:
        with Session(self.db) as db:
            rows = db.scalars(select(Device).where(Device.blocked.is_(True)).order_by(Device.mac))
            return [
                {"mac": d.mac, "blocked_at": iso(d.blocked_at), "reason": d.blocked_reason}
                for d in rows
            ]

    # -- trusted devices -------------------------------------------------------------------

    def trust(
        self, *, mac: str, label: str, tier: str, created_by: str | None = None
    ) -> TrustedDeviceInfo:
        """Put ``mac`` on the trusted list (or change its label and tier). A blocked device
        is refused: trusting never overrides a block. A device on the LAN gets its session at
        once, one that is not yet gets it at the first tick that sees it."""
        mac = normalize_mac(mac)
        self._tier(tier, trusted=True)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                device = db.get(Device, mac)
                if device is not None and device.blocked:
                    raise Refused(
                        f"device {mac} is blocked: unblock it before trusting it",
                        code=ErrorCode.BLOCKED,
                    )
                row = db.get(TrustedDevice, mac)
                if row is None:
                    row = TrustedDevice(mac=mac, created_at=now, created_by=created_by)
                    db.add(row)
                row.label, row.tier = label, tier
                log.info("trusted %s (%s) on %s, by %s", mac, label, tier, created_by or "-")
            self._admit_trusted({mac})
            return next(t for t in self.trusted() if t["mac"] == mac)

    def untrust(self, *, mac: str) -> UntrustResult:
        """Take ``mac`` off the trusted list and end its trusted session (``untrusted``): the
        device is walled again, like any other."""
        mac = normalize_mac(mac)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db, db.begin():
                row = db.get(TrustedDevice, mac)
                if row is None:
                    raise NotFound(f"{mac} is not trusted", code=ErrorCode.NOT_TRUSTED)
                db.delete(row)
                sess = self._find_active(db, None, mac)
                if sess is not None and sess.source is not Source.TRUSTED:
                    sess = None  # a session of its own (a voucher, say) is left alone
                if sess is not None:
                    self._end(db, sess, EndReason.UNTRUSTED, now)
                db.flush()
                if sess is not None:
                    self._apply(self._change([self._wanted(sess)], []))
                log.info("untrusted %s", mac)
                return {"mac": mac, "ended_session": sess.id if sess else None}

    def trusted(self) -> builtins.list[TrustedDeviceInfo]:
        with Session(self.db) as db:
            rows = db.execute(
                select(TrustedDevice, Device.blocked, ClientSession.id, ClientSession.ip)
                .outerjoin(Device, Device.mac == TrustedDevice.mac)
                .outerjoin(
                    ClientSession,
                    (ClientSession.mac == TrustedDevice.mac) & ClientSession.ended_at.is_(None),
                )
                .order_by(TrustedDevice.label, TrustedDevice.mac)
            )
            return [
                {
                    "mac": t.mac,
                    "label": t.label,
                    "tier": t.tier,
                    "created_at": iso(t.created_at),
                    "created_by": t.created_by,
                    "blocked": bool(blocked),
                    "session": sid,
                    "ip": ip,
                }
                for t, blocked, sid, ip in rows
            ]

    def _admit_trusted(self, only: set[str] | None = None, lan: _Neighbours | None = None) -> None:
        """Authorize every trusted device on the LAN that has no trusted session on its
        tier: one query, and one neighbour dump when some device needs one (``lan``: the
        tick's, shared). Blocked devices are skipped (a block wins); a device not on the LAN
        waits for a later tick.

        The query and the neighbour dump run without the lock (a trusted device away from
        the LAN makes the dump every tick: a login must not wait for it, issue #12); under
        the lock the query runs again for the devices found, so what an operation changed
        meanwhile (a block, a session, the list) is what counts."""
        wanted = self._trusted_wanted(only)
        if not wanted:
            return
        found = (lan or _Neighbours(self.dp)).ips_of(set(wanted))
        if not found:
            return
        with self.lock:
            wanted = self._trusted_wanted(set(found))
            for mac, ip in found.items():
                if mac not in wanted:
                    continue
                try:
                    self.authorize(
                        ip=ip,
                        mac=mac,
                        tier=wanted[mac],
                        source=Source.TRUSTED,
                        minutes=0,
                        idle_minutes=0,
                    )
                except (Refused, UsageError, NotFound) as exc:
                    log.warning("trusted %s at %s not let out: %s", mac, ip, exc.message)

    def _trusted_wanted(self, only: set[str] | None) -> dict[str, str]:
        """mac → tier of the trusted devices (of ``only``) with no trusted session on their
        tier, not blocked."""
        with Session(self.db) as db:
            q = (
                select(TrustedDevice.mac, TrustedDevice.tier)
                .outerjoin(Device, Device.mac == TrustedDevice.mac)
                .outerjoin(
                    ClientSession,
                    (ClientSession.mac == TrustedDevice.mac)
                    & ClientSession.ended_at.is_(None)
                    & (ClientSession.source == Source.TRUSTED)
                    & (ClientSession.tier == TrustedDevice.tier),
                )
                .where(ClientSession.id.is_(None), or_(Device.blocked.is_(None), ~Device.blocked))
            )
            if only is not None:
                q = q.where(TrustedDevice.mac.in_(only))
            return {mac: tier for mac, tier in db.execute(q)}

    # -- returning devices (issue #13 item 2: no retyping) -----------------------------------

    def _remember_resumable(self, sess: ClientSession, reason: EndReason) -> None:
        """A voucher or free session that idled out (the device left) may resume; any other
        end — a kick, a logout, a block, the voucher's time or data over, a move — forgets
        the device until it logs in again."""
        resumable = reason is EndReason.IDLE and (
            sess.source is Source.VOUCHER
            or (sess.source is Source.FREE and self.config.portal.free_remember_acceptance == "day")
        )
        if not resumable:
            self.resumable.pop(sess.mac, None)
            return
        day = self.local_day(sess.started_at)
        self.resumable[sess.mac] = _Resumable(
            tier=sess.tier,
            voucher_id=sess.voucher_id,
            day=day,
            until=sess.expires_at
            if sess.voucher_id is not None
            else self.next_reset(now=sess.started_at),
            left_at=time.monotonic(),
        )

    def _load_resumable(self, db: Session, now: dt.datetime) -> None:
        """After a restart: the devices whose last session idled out and may still resume
        (two indexed queries at start-up, none per tick)."""
        later = aliased(ClientSession)
        midnight = self.next_reset(now) - dt.timedelta(days=1)
        free_on = self.config.portal.free_remember_acceptance == "day"
        kinds = [(ClientSession.source == Source.VOUCHER) & (ClientSession.expires_at > now)]
        if free_on:
            kinds.append(
                (ClientSession.source == Source.FREE) & (ClientSession.started_at >= midnight)
            )
        rows = db.scalars(
            select(ClientSession).where(
                ClientSession.end_reason == EndReason.IDLE,
                or_(*kinds),
                ~select(later.id)
                .where(later.mac == ClientSession.mac, later.id > ClientSession.id)
                .exists(),
            )
        )
        for sess in rows:
            self._remember_resumable(sess, EndReason.IDLE)

    def _admit_resumable(self, lan: _Neighbours) -> None:
        """Let out again the devices of :attr:`resumable` that are back and in use: a voucher
        still running on its package's ``auto_resume``, with data left and this MAC still
        among its devices; the free tier on the day it was accepted, while the allowance
        lasts. A blocked device never; what no longer qualifies is forgotten.

        *In use*, not merely present: a phone left on the WiFi keeps its neighbour entry
        (it answers ARP, renews its lease) without anyone touching it, and resuming it on
        that let it out again after every idle timeout until its day's free minutes were
        gone with no traffic at all. The sign of use is the ``portal_peers`` set: the kernel
        puts (address, MAC) there for every packet of the device that reaches the portal's
        ports — a walled device's plain HTTP is redirected there, so the OS's connectivity
        probe on reassociation, or any page opened, lands in it — and drops it 30 s after
        the last one (``ruleset.PEERS_TIMEOUT``). It is already kept for the portal (who is
        at an address), costs one small listing per tick and nothing per packet more, and,
        unlike DNS or DHCP (background lookups, lease renewals), it is not refreshed by a
        phone lying unused. Only a packet since the session ended counts (the element's age,
        whole seconds, rounded towards older): the requests of the last moments before it —
        a status page looked at, a kick's — are not a return. The neighbour table must agree
        (the MAC at that address, the only MAC seen there): the dump is made only when some
        resumable MAC is a peer.
        """
        with self.lock:
            now = self.clock()
            for mac, r in list(self.resumable.items()):
                if r.until is not None and r.until <= now:
                    del self.resumable[mac]
            left_at = {mac: r.left_at for mac, r in self.resumable.items()}
        if not left_at:
            return
        # The kernel's two dumps without the lock: the portal's peers are hundreds of
        # elements after a power cut (2.6 ms at 600, 9 ms at 2,000: bench/README.md), read
        # every tick while anyone is resumable; a login must not wait for them (issue #12).
        peers = self.dp.portal_peers()
        mono = time.monotonic()
        in_use = {
            (ip, mac)
            for (ip, mac), age in peers.items()
            if mac in left_at and mono - age >= left_at[mac]
        }
        if not in_use:
            return
        macs_at: dict[str, set[str]] = {}
        for ip, mac in peers:
            macs_at.setdefault(ip, set()).add(mac)
        table = lan.table()
        seen = {mac: ip for ip, mac in in_use if table.get(ip) == mac and len(macs_at[ip]) == 1}
        if not seen:
            return
        with self.lock:
            # Still resumable, and since the same moment it left (a login or another end
            # meanwhile changes either): else the dump said nothing about it.
            seen = {
                mac: ip
                for mac, ip in seen.items()
                if mac in self.resumable and self.resumable[mac].left_at == left_at[mac]
            }
            if not seen:
                return
            now = self.clock()
            grants: dict[str, dict[str, Any]] = {}
            with Session(self.db) as db:
                blocked = set(
                    db.scalars(
                        select(Device.mac).where(Device.mac.in_(seen), Device.blocked.is_(True))
                    )
                )
                wanted = {self.resumable[m].voucher_id for m in seen} - {None}
                vouchers: dict[int, Any] = {}
                bound: set[tuple[int, str]] = set()
                used: dict[int, int] = {}
                if wanted:
                    vouchers = {
                        row.id: row
                        for row in db.execute(
                            select(
                                Voucher.id,
                                Voucher.expires_at,
                                Voucher.bytes_total,
                                VoucherBatch.tier,
                            )
                            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
                            .join(Package, VoucherBatch.package_id == Package.id)
                            .where(
                                Voucher.id.in_(wanted),
                                Voucher.state == VoucherState.ACTIVE.value,
                                Voucher.expires_at > now,
                                Package.auto_resume.is_(True),
                                # An online-time voucher with its minutes used up: not again.
                                or_(
                                    Voucher.online_seconds_total.is_(None),
                                    Voucher.online_seconds_used < Voucher.online_seconds_total,
                                ),
                            )
                        )
                    }
                    bound = {
                        (vid, m)
                        for vid, m in db.execute(
                            select(VoucherDevice.voucher_id, VoucherDevice.mac).where(
                                VoucherDevice.voucher_id.in_(wanted), VoucherDevice.mac.in_(seen)
                            )
                        )
                    }
                    used = self._voucher_bytes(db, set(vouchers))
            for mac in seen:
                r = self.resumable[mac]
                if mac in blocked:
                    continue
                if r.voucher_id is None:
                    if r.day == self.today(now):
                        grants[mac] = {"tier": r.tier, "source": Source.FREE}
                    continue
                v = vouchers.get(r.voucher_id)
                if v is None or (r.voucher_id, mac) not in bound:
                    continue
                if v.bytes_total is not None and used.get(v.id, 0) >= v.bytes_total:
                    continue
                grants[mac] = {
                    "tier": v.tier,
                    "source": Source.VOUCHER,
                    "expires_at": v.expires_at,
                    "bytes_limit": v.bytes_total,
                    "voucher_id": v.id,
                }
            for mac in seen:
                grant = grants.get(mac)
                if grant is None:
                    log.info("%s is back but may not resume: forgotten", mac)
                    self.resumable.pop(mac, None)
                    continue
                try:
                    self.authorize(ip=seen[mac], mac=mac, **grant)
                except (Refused, UsageError, NotFound) as exc:
                    log.info("%s is back but was not let out again: %s", mac, exc.message)
                    self.resumable.pop(mac, None)
                else:
                    log.info(
                        "%s is back: let out again on %s without the portal", mac, grant["tier"]
                    )

    # -- the tick --------------------------------------------------------------------------

    def tick(self, force_flush: bool = False) -> TickReport:
        """Account, expire, flush when due, and reconcile the kernel with the database.

        A login must never wait long for a tick (issue #12: 5 ms), whatever the number of
        sessions, so the tick takes the engine lock only in short slices and does its reads
        without it: the kernel's counters and state, then what the database holds (the
        running sessions as rows, the day's usage, the vouchers' totals) in a read
        transaction of its own. Under the lock, a slice at a time (at most
        :data:`TICK_SLICE_SECONDS` of Python, or :data:`FLUSH_SLICE_ROWS` rows written), the
        tick charges what the classes passed, decides which sessions end, ends them (each
        decision checked again on the session's row as it is then: an operation between the
        read and the slice may have extended or ended it), and writes what was counted;
        between slices the lock is free. Every slice re-checks what the rows read without
        the lock cannot say: a session no longer in :attr:`live` ended meanwhile (a kick,
        a logout) and is left alone; a class an operation touched since the kernel read
        began is counted at the next tick (from the reading the operation left), as before.
        The reconcile's plan is worked out without the lock and applied only if no kernel
        change happened since the kernel read (else the next tick looks). Each phase's time
        is kept in :attr:`tick_phases` (milliseconds; ``lock_held`` is the longest slice,
        what a login may have waited, ``lock_held_total`` their sum). Python's cyclic
        collector is paused meanwhile (:func:`gateway.memory.collector_paused`: its full
        collections, promoted by the tick's own objects, held the interpreter 140–220 ms a
        tick at 10,000 sessions).
        """
        with collector_paused():
            return self._tick(force_flush)

    def _tick(self, force_flush: bool) -> TickReport:
        report = TickReport()
        phases: dict[str, float] = {}
        held: builtins.list[float] = []
        started = time.perf_counter()
        # Under the lock: an operation's kernel change (always under it) is then either
        # wholly before this point, or it bumps the generation and lists its classes after.
        with self.lock:
            generation = self._generation
            self._touched = set()
            looked = self._tick_looks_at()
        readings = self.dp.counters(looked)
        snap = self.dp.snapshot(readings=readings, login_state=looked is None)
        if looked is None:
            self._last_full_look = self._monotonic()
        phases["kernel_read"] = _ms_since(started)
        phases["classes_read"] = float(len(readings[0]) + len(readings[1]))
        ended: builtins.list[Wanted] = []
        try:
            with self._slice(held):
                now = self.clock()
                stepped = self.clock_watch.step(now) if self._epoch_start is not None else None
                speed_edges = self._speed_edges(now)
                # Seconds that really passed (monotonic), not the wall clock's difference: a
                # clock stepped forward by days must not charge days to the free tier.
                elapsed = self.tick_clock.step()
                online_step = self.online_clock.step()
                self._last_tick = now
                self._watch_clock(now, stepped)  # (a step moves rows: read below, after it)
                day = self.today(now)
            t = time.perf_counter()
            read = self._tick_read(day)
            phases["db_read"] = _ms_since(t)
            active = read.active
            t = time.perf_counter()
            self._account_sliced(read, readings, generation, elapsed, online_step, now, held)
            phases["account"] = _ms_since(t)
            t = time.perf_counter()
            ending = self._expiry_sliced(read, now, day, held)
            phases["expiry"] = _ms_since(t)
            t = time.perf_counter()
            if ending:
                by_id = {s.id: s for s in active}
                for start in range(0, len(ending), END_SLICE_SESSIONS):
                    chunk = ending[start : start + END_SLICE_SESSIONS]
                    ended += self._end_sliced(chunk, by_id, read, now, day, report, held)
            phases["expiry_kernel"] = _ms_since(t)
            if self.tick_hooks:  # RADIUS: its interim updates read the ORM objects
                with self._slice(held), Session(self.db) as db, db.begin():
                    objects = [s for s in self._active(db) if s.ended_at is None]
                    for tick_hook in self.tick_hooks:
                        tick_hook(db, objects, now)
            due = (
                force_flush
                or report.ended
                or self._late
                or (time.monotonic() - self._last_flush >= self.config.gateway.flush_seconds)
            )
            t = time.perf_counter()
            if due:
                self._flush_sliced(active, held)
                report.flushed = True
            phases["flush"] = _ms_since(t)
        except SQLAlchemyError:
            # Not written (the storage is full, say): what was counted stays in memory for
            # the next tick, and the kernel is made to match what the database holds — a
            # login whose commit failed after its kernel change is undone here.
            with self.lock:
                self._reconcile_with_database()
            raise
        wanted = [self._wanted(s, now) for s in active if s.ended_at is None]
        phases["lock_held"] = max(held) * 1000 if held else 0.0
        phases["lock_held_total"] = sum(held) * 1000
        phases["lock_slices"] = float(len(held))
        # A tick whose sessions ended changed the kernel after its read, an operation may
        # have changed it during the read or between the slices: then the next tick looks.
        t = time.perf_counter()
        with self.lock:
            fresh = not ended and generation == self._generation
        pool = self.pool if looked is None else self.pool.only(looked)
        plan = make_plan(wanted, read.blocked, snap, self.network, pool, looked) if fresh else None
        phases["reconcile_plan"] = _ms_since(t)
        if plan is not None and not plan.empty and looked is not None:
            self._look_at_all_next()  # the kernel was wrong
        if plan is not None and not plan.empty:
            with self.lock:
                t = time.perf_counter()
                if generation == self._generation:
                    report.plan = self._reconcile(
                        wanted, read.blocked, snap, expected=bool(speed_edges), made=plan
                    )
                else:
                    log.debug("reconcile: the kernel changed meanwhile; the next tick looks")
                phases["reconcile_apply"] = _ms_since(t)
        t = time.perf_counter()
        lan = _Neighbours(self.dp)  # at most one neighbour dump for both
        self._admit_trusted(lan=lan)
        self._admit_resumable(lan)
        phases["admit"] = _ms_since(t)
        phases["total"] = _ms_since(started)
        self.tick_phases = phases
        if snap.login_sets_looked:  # (a partial look leaves the last whole look's sizes)
            self.kernel_sizes = {
                "authorized": len(snap.authorized),
                "down_class": len(snap.down_map),
                "up_class": len(snap.up_map),
                "blocked": len(snap.blocked),
                "pinned_neighbours": len(snap.pinned or ()),
            }
        return report

    def _look_at_all_next(self) -> None:
        self._last_full_look = None

    def _tick_looks_at(self) -> set[int] | None:
        """The classes this tick reads (under the lock): its sessions' and those draining,
        or None — every class of both devices — at the first tick, after a tick found the
        kernel wrong, and when the last whole look is ``[gateway] full_look_seconds`` old.
        On a /18 the whole read is 2 × 16,381 classes, 108–160 ms of the tick's interpreter
        at 10 sessions, which a login beside it waited for (issue #12). An idle pool class
        changes only by a kernel change of ours or by hand, and matters only once a session
        takes it (a login sets its rates itself): a minute's wait to put it right costs
        nothing. A partial look reads neither the login sets nor the pins (only an operation
        of this gateway, which applies its change at once, or a hand moves them; 88 ms and
        more of a tick at 10,000 sessions): a session the engine starts to follow in a tick
        (a row it did not know) makes the next look whole."""
        last = self._last_full_look
        if last is None or self._monotonic() - last >= self.config.gateway.full_look_seconds:
            return None
        return {live.minor for live in self.live.values()} | self._draining.keys()

    @contextlib.contextmanager
    def _slice(self, held: builtins.list[float]) -> Iterator[None]:
        """One slice of a tick's work under the engine lock; its length goes to ``held``.
        After it the tick thread sleeps a moment, so that a login waiting for the lock gets
        it (and the interpreter) before the tick's next slice."""
        with self.lock:
            t = time.perf_counter()
            try:
                yield
            finally:
                held.append(time.perf_counter() - t)
        time.sleep(SLICE_PAUSE_SECONDS)

    def _tick_read(self, day: dt.date) -> _TickRead:
        """What a tick needs from the database, read without the engine lock in one read
        transaction: the running sessions (rows), the blocked devices, the running
        online-time vouchers' terms, the vouchers' bytes so far (of their ended and
        flushed sessions: the running ones' unflushed bytes are added under the lock) and
        the day's usage rows of the running devices' identities."""
        with Session(self.db) as db:
            active = self._rows(db)
            blocked = self._blocked(db)
            conn = db.connection()
            terms = online_terms(conn, {s.voucher_id for s in active if s.voucher_id is not None})
            capped = {s.voucher_id for s in active if s.voucher_id is not None and s.bytes_limit}
            voucher_db = self._voucher_db_bytes(db, capped)
            usage, groups = self._day_usage(db, day, None, True, {s.mac for s in active})
        return _TickRead(active, blocked, terms, voucher_db, usage, groups)

    def _account_sliced(
        self,
        read: _TickRead,
        readings: tuple[dict[int, ClassReading], dict[int, ClassReading]],
        generation: int,
        elapsed: float,
        online_step: float,
        now: dt.datetime,
        held: builtins.list[float],
    ) -> None:
        """Charge what every running session's classes passed, a slice at a time. A class an
        operation touched since the kernel read began (a kick read its final counters, a
        login took it) is left out: the next tick counts it from what the operation left."""
        down, up = readings
        when = (now, self.today(now), now.replace(minute=0, second=0, microsecond=0))
        active = read.active
        busy: set[int] = set()  # the online-time vouchers one of whose sessions moved traffic
        i, n = 0, len(active)
        # (bound once: the loop runs for every session on every tick)
        lives, delta, charge, down_of, up_of = (
            self.live,
            self._delta,
            self._charge,
            down.get,
            up.get,
        )
        while True:
            with self._slice(held):
                touched = self._touched if generation != self._generation else set()
                deadline = time.perf_counter() + TICK_SLICE_SECONDS
                while i < n:
                    sess = active[i]
                    i += 1
                    live = lives.get(sess.id)
                    if live is None:
                        live = self._track_if_running(sess)
                        if live is None:
                            continue
                    minor = live.minor
                    if minor in touched:
                        got = (0, 0)
                    else:
                        got = (
                            delta("down", minor, down_of(minor)),
                            delta("up", minor, up_of(minor)),
                        )
                    charge(live, got, elapsed, when)
                    if sess.voucher_id is not None and live.last_activity == now:
                        busy.add(sess.voucher_id)
                    if not i & 31 and time.perf_counter() >= deadline:
                        break
                if i >= n:
                    self._account_drains(down, up, touched, now)
                    self._count_online(read.terms, busy, online_step)
                    break

    def _track_if_running(self, sess: _Row) -> _Live | None:
        """A running row the engine does not follow (put there by another process, say): it
        is followed from here, its class counting on from its last reading — unless it
        ended since the rows were read (a kick between the read and this slice)."""
        with Session(self.db) as db:
            still = db.scalar(
                select(ClientSession.id).where(
                    ClientSession.id == sess.id, ClientSession.ended_at.is_(None)
                )
            )
        if still is None:
            return None
        self._track(sess, baseline=True)
        self._look_at_all_next()  # its addresses in the login sets, its pin
        return self.live[sess.id]

    def _expiry_sliced(
        self, read: _TickRead, now: dt.datetime, day: dt.date, held: builtins.list[float]
    ) -> builtins.list[int]:
        """The ids of the sessions due to end (their time, their quota, their voucher's,
        their idle timeout), decided a slice at a time under the lock (the decisions read
        the bytes just counted); they end in :meth:`_end_sliced`, checked again there."""
        due: builtins.list[int] = []
        active = read.active
        i, n = 0, len(active)
        vouchers: dict[int, int] | None = None
        while i < n:
            with self._slice(held), Session(self.db) as db, self._day_rows_of(read, day):
                if vouchers is None:
                    vouchers = read.vouchers_with_live(self.live)
                deadline = time.perf_counter() + TICK_SLICE_SECONDS
                while i < n:
                    sess = active[i]
                    i += 1
                    if sess.id in self.live and self._expiry(db, sess, now, day, vouchers):
                        due.append(sess.id)
                    if not i & 31 and time.perf_counter() >= deadline:
                        break
        read.vouchers = vouchers or {}
        return due

    def _end_sliced(
        self,
        chunk: builtins.list[int],
        rows: dict[int, _Row],
        read: _TickRead,
        now: dt.datetime,
        day: dt.date,
        report: TickReport,
        held: builtins.list[float],
    ) -> builtins.list[Wanted]:
        """End the sessions of ``chunk`` (a few at a time), each decided again on its row as
        it is now (an operation since the read may have extended it, or ended it), and take
        them out of the kernel as a kick does: a change of their own."""
        ended: builtins.list[Wanted] = []
        with self._slice(held):
            with (
                self._kept_if_unwritten() as keep,
                Session(self.db) as db,
                db.begin(),
                self._day_rows_of(read, day),
            ):
                keep()
                for sid in chunk:
                    sess = db.get(ClientSession, sid)
                    if sess is None or sess.ended_at is not None or sid not in self.live:
                        continue
                    reason = self._expiry(db, sess, now, day, read.vouchers)
                    if reason is None:
                        continue
                    ended.append(self._wanted(sess, now))
                    self._end(db, sess, reason, now)  # (its end hooks get the ORM object)
                    row = rows.get(sid)
                    if row is not None:
                        row.ended_at, row.end_reason = sess.ended_at, sess.end_reason
                    report.ended.append((sid, reason.value))
            if ended:
                try:
                    change = self._change(ended, [])
                    self._apply(change)
                    report.plan = change.summary()
                except KernelError as exc:  # the kernel was not what we left: look at it all
                    log.warning("ending sessions: %s; reconciling", exc)
                    self._reconcile_with_database()
        return ended

    @contextlib.contextmanager
    def _day_rows_of(self, read: _TickRead, day: dt.date) -> Iterator[None]:
        """The day's usage rows read without the lock, lent to :meth:`_used` for one slice
        (a login's own, under the lock, must not find the tick's there)."""
        self._day_rows, self._groups = (day, read.usage), read.groups
        try:
            yield
        finally:
            self._day_rows = self._groups = None

    def _reconcile_with_database(self) -> None:
        """Make the kernel match what the database holds (under the lock)."""
        with Session(self.db) as db:
            active = self._active(db)
            wanted = [self._wanted(s) for s in active]
            blocked = self._blocked(db)
        self._reconcile(wanted, blocked, self.dp.snapshot())

    @contextlib.contextmanager
    def _kept_if_unwritten(self) -> Iterator[Callable[[], None]]:
        """Around a tick's write of session ends: when it cannot be written (the storage is
        full, say), the bytes counted stay in memory for the next tick (``keep()`` marks
        what to go back to)."""
        kept: list[tuple[dict[int, _Live], dict[int, tuple[int, int]], Any, Any]] = []

        def keep() -> None:
            counts = {sid: (live.bytes_down, live.bytes_up) for sid, live in self.live.items()}
            kept.append((dict(self.live), counts, dict(self.pending), dict(self.pending_hourly)))

        try:
            yield keep
        except SQLAlchemyError:
            if kept:
                live, counts, self.pending, self.pending_hourly = kept[0]
                for sid, (down, up) in counts.items():
                    live[sid].bytes_down, live[sid].bytes_up = down, up
                self.live = live
            raise

    def _flush_sliced(self, active: builtins.list[_Row], held: builtins.list[float]) -> None:
        """Write what was counted since the last flush, a slice at a time under the lock,
        each slice its own transaction of at most :data:`FLUSH_SLICE_ROWS` rows: a login
        waits for neither the engine lock nor SQLite's write lock longer than one slice.
        What a slice writes leaves memory only once it is committed; a slice that cannot be
        written leaves it there for the next flush (and raises)."""
        # The late bytes of ended sessions and the online seconds (few): one transaction,
        # always opened, so that a storage that cannot be written says so every flush.
        with self._slice(held):
            with Session(self.db) as db, db.begin():
                db.connection()
                late = dict(self._late)
                for sid, after in late.items():
                    row = db.get(ClientSession, sid)
                    if row is not None:
                        row.bytes_down += after.bytes_down
                        row.bytes_up += after.bytes_up
                db.flush()
                self._flush_online(db)
            for after in late.values():
                # A draining class may count more for it at a later tick: only that, then.
                after.bytes_down = after.bytes_up = 0
            self._late.clear()
        step = FLUSH_SLICE_ROWS
        for start in range(0, len(active), step):
            with self._slice(held):
                rows: builtins.list[dict[str, Any]] = []
                written: builtins.list[tuple[_Live, int, int]] = []
                for sess in active[start : start + step]:
                    pending = self._unwritten(sess)
                    if pending is None:
                        continue
                    live, flush_row = pending
                    rows.append(flush_row)
                    written.append((live, live.bytes_down, live.bytes_up))
                if not rows:
                    continue
                with Session(self.db) as db, db.begin():
                    db.connection().execute(_FLUSH_SESSIONS, rows)
                for counted, down, up in written:
                    counted.bytes_down -= down
                    counted.bytes_up -= up
        self._flush_usage_sliced(DailyUsage, ["mac", "day", "tier"], self.pending, held)
        self._flush_usage_sliced(HourlyUsage, ["mac", "hour"], self.pending_hourly, held)
        self._last_flush = time.monotonic()

    def _flush_usage_sliced(
        self,
        model: Any,
        keys: builtins.list[str],
        pending: dict[Any, _Pending],
        held: builtins.list[float],
    ) -> None:
        """Add the pending usage of ``model``'s table (day or hour), a slice of rows per
        transaction; each slice's amounts leave ``pending`` once committed."""
        todo = builtins.list(pending)
        for start in range(0, len(todo), FLUSH_SLICE_ROWS):
            with self._slice(held):
                chunk = [k for k in todo[start : start + FLUSH_SLICE_ROWS] if k in pending]
                rows: builtins.list[dict[str, Any]] = []
                for key in chunk:
                    p = pending[key]
                    values: dict[str, Any] = dict(zip(keys, key, strict=True))
                    values["seconds"] = int(round(p.seconds))
                    values["bytes_down"], values["bytes_up"] = p.bytes_down, p.bytes_up
                    rows.append(values)
                with Session(self.db) as db, db.begin():
                    self._add_usage(db, model, keys, rows)
                for key, values in zip(chunk, rows, strict=True):
                    p = pending[key]
                    # (a kick between the slices may have charged more bytes: they stay;
                    # the fraction of a second is dropped, as it always was)
                    p.seconds = 0.0
                    p.bytes_down -= values["bytes_down"]
                    p.bytes_up -= values["bytes_up"]
                    if not (p.bytes_down or p.bytes_up):
                        del pending[key]

    def _account(
        self,
        active: builtins.list[_Row],
        down: dict[int, ClassReading],
        up: dict[int, ClassReading],
        elapsed: float,
        now: dt.datetime,
    ) -> None:
        when = (now, self.today(now), now.replace(minute=0, second=0, microsecond=0))
        for sess in active:
            live = self.live[sess.id]
            got = (
                self._delta("down", live.minor, down.get(live.minor)),
                self._delta("up", live.minor, up.get(live.minor)),
            )
            self._charge(live, got, elapsed, when)

    def _account_drains(
        self,
        down: dict[int, ClassReading],
        up: dict[int, ClassReading],
        touched: set[int],
        now: dt.datetime,
    ) -> None:
        """What the classes of ended sessions passed since their last reading (their queue
        draining) is theirs, counted late; a class that passed nothing is drained. A class
        an operation touched during the kernel read waits for the next tick."""
        when = (now, self.today(now), now.replace(minute=0, second=0, microsecond=0))
        for minor, live in list(self._draining.items()):
            if minor in touched:
                continue
            got = (
                self._delta("down", minor, down.get(minor)),
                self._delta("up", minor, up.get(minor)),
            )
            if got == (0, 0):
                del self._draining[minor]
                continue
            self._charge(live, got, 0.0, when)
            self._late[live.session_id] = live

    def _settle_drain(self, minor: int, now: dt.datetime) -> None:
        """Before the next session takes a class whose last session's queue may still be
        draining: one reading of the class, what it passed since the last one counted to
        the session that ended. Nothing to do (no kernel read) once a tick saw it drained."""
        live = self._draining.pop(minor, None)
        if live is None:
            return
        try:
            down, up = self.dp.class_counters(minor)
        except KernelError as exc:  # the new session counts on from the last reading
            log.warning("final counters of session %d: %s", live.session_id, exc)
            return
        got = (self._delta("down", minor, down), self._delta("up", minor, up))
        if got != (0, 0):
            hour = now.replace(minute=0, second=0, microsecond=0)
            self._charge(live, got, 0.0, (now, self.today(now), hour))
            self._late[live.session_id] = live

    def _delta(self, direction: str, minor: int, reading: ClassReading | None) -> int:
        """IP-layer bytes a class passed since its last reading."""
        if reading is None:
            return 0
        last_bytes, last_packets = self._last_raw.get(direction, minor)
        if reading.bytes == last_bytes and reading.packets == last_packets:
            return 0  # nothing passed (an idle session): no new reading to keep
        if reading.bytes < last_bytes:  # the class was recreated
            last_bytes, last_packets = 0, 0
        frames = reading.bytes - last_bytes
        packets = (reading.packets - last_packets) % PACKETS_WRAP
        self._last_raw.set(direction, minor, reading.bytes, reading.packets)
        return shaping.ip_layer_bytes(frames, packets)

    def _charge(
        self,
        live: _Live,
        got: tuple[int, int],
        elapsed: float,
        when: tuple[dt.datetime, dt.date, dt.datetime],
    ) -> None:
        """Add ``got`` (down, up) bytes and ``elapsed`` seconds to a session and its device's
        day and hour (``when``: now, its local day, its UTC hour)."""
        now, day, hour = when
        live.bytes_down += got[0]
        live.bytes_up += got[1]
        self.charged_bytes[0] += got[0]
        self.charged_bytes[1] += got[1]
        if elapsed > 0:
            live.rate_down_bps = int(got[0] * 8 / elapsed)
            live.rate_up_bps = int(got[1] * 8 / elapsed)
        if got[0] or got[1]:
            live.last_activity = now
        # get, then set when missing: setdefault would make a _Pending for every session
        # on every tick (10,000 per tick) only to throw nearly all of them away.
        day_key = (live.mac, day, live.tier)
        on_day = self.pending.get(day_key)
        if on_day is None:
            on_day = self.pending[day_key] = _Pending()
        hour_key = (live.mac, hour)
        in_hour = self.pending_hourly.get(hour_key)
        if in_hour is None:
            in_hour = self.pending_hourly[hour_key] = _Pending()
        for pending in (on_day, in_hour):
            pending.seconds += elapsed
            pending.bytes_down += got[0]
            pending.bytes_up += got[1]

    def _expiry(
        self,
        db: Session,
        sess: AnySession,
        now: dt.datetime,
        day: dt.date,
        vouchers: dict[int, int],
    ) -> EndReason | None:
        if sess.expires_at is not None and now >= sess.expires_at:
            return EndReason.SESSION
        if sess.bytes_limit is not None and self._cap_used(db, sess, vouchers) >= sess.bytes_limit:
            return EndReason.QUOTA
        online_left = self._online_left(sess.voucher_id)
        if online_left is not None and online_left <= 0:
            return EndReason.QUOTA  # the voucher's online time is used up, like its data
        tier = self.config.tiers.get(sess.tier)
        trusted = sess.source is Source.TRUSTED
        if tier is not None and (tier.daily_minutes or tier.daily_mb) and not trusted:
            if self._exhausted(db, sess.mac, tier, day):
                return EndReason.QUOTA
        if sess.idle_minutes:
            live = self.live.get(sess.id)
            last = max(
                t
                for t in (
                    sess.last_activity_at,
                    live.last_activity if live else None,
                    self.started_at,
                )
                if t is not None
            )
            if now - last >= dt.timedelta(minutes=sess.idle_minutes):
                return EndReason.IDLE
        return None

    def _unwritten(self, sess: _Row) -> tuple[_Live, dict[str, Any]] | None:
        """A running session's counts since the last flush, as the flush's row (None when
        there is nothing to write)."""
        live = self.live.get(sess.id)
        if live is None or sess.ended_at is not None:
            return None
        if not (live.bytes_down or live.bytes_up or live.last_activity):
            return None
        last = live.last_activity or sess.last_activity_at
        return live, {"sid": sess.id, "down": live.bytes_down, "up": live.bytes_up, "last": last}

    def _flush(self, db: Session, active: builtins.list[_Row]) -> None:
        """Write what was counted since the last flush: Core statements, one executemany
        per table (the ORM's unit of work cost seconds per thousand sessions: a SELECT per
        usage row, an UPDATE per object). The rows of ``active`` are updated in memory
        too, so that the rest of the transaction sees the totals."""
        for sid, late in self._late.items():
            ended = db.get(ClientSession, sid)
            if ended is not None:
                ended.bytes_down += late.bytes_down
                ended.bytes_up += late.bytes_up
            # A draining class may count more for it at a later tick: only that, then.
            late.bytes_down = late.bytes_up = 0
        self._late.clear()
        sessions = []
        for sess in active:
            pending = self._unwritten(sess)
            if pending is None:
                continue
            live, row = pending
            last = row["last"]
            sessions.append(row)
            sess.bytes_down += live.bytes_down
            sess.bytes_up += live.bytes_up
            sess.last_activity_at = last
            live.bytes_down = live.bytes_up = 0
        table = cast(Table, ClientSession.__table__)
        if sessions:
            db.connection().execute(
                update(table)
                .where(table.c.id == bindparam("sid"))
                .values(
                    bytes_down=table.c.bytes_down + bindparam("down"),
                    bytes_up=table.c.bytes_up + bindparam("up"),
                    last_activity_at=bindparam("last"),
                ),
                sessions,
            )
        daily = [
            {
                "mac": mac,
                "day": day,
                "tier": tier,
                "seconds": int(round(p.seconds)),
                "bytes_down": p.bytes_down,
                "bytes_up": p.bytes_up,
            }
            for (mac, day, tier), p in self.pending.items()
        ]
        hourly = [
            {
                "mac": mac,
                "hour": hour,
                "seconds": int(round(p.seconds)),
                "bytes_down": p.bytes_down,
                "bytes_up": p.bytes_up,
            }
            for (mac, hour), p in self.pending_hourly.items()
        ]
        self._add_usage(db, DailyUsage, ["mac", "day", "tier"], daily)
        self._add_usage(db, HourlyUsage, ["mac", "hour"], hourly)
        if self._day_rows is not None:  # the day's rows loaded: brought up to date
            loaded_day, loaded = self._day_rows
            for (mac, day, tier), p in self.pending.items():
                if day == loaded_day:
                    u = loaded.setdefault((mac, tier), _Usage(0, 0, 0))
                    u.seconds += int(round(p.seconds))
                    u.bytes_down += p.bytes_down
                    u.bytes_up += p.bytes_up
        self.pending.clear()
        self.pending_hourly.clear()
        self._flush_online(db)
        self._last_flush = time.monotonic()

    @staticmethod
    def _add_usage(
        db: Session, model: Any, keys: builtins.list[str], rows: builtins.list[dict[str, Any]]
    ) -> None:
        """Add ``rows``' seconds and bytes to the usage table of ``model`` (rows made where
        missing): one INSERT … ON CONFLICT DO UPDATE, SQLite and PostgreSQL alike. ORM
        objects of the table in the session are expired (read again when next used)."""
        if not rows:
            return
        conn = db.connection()
        postgres = conn.dialect.name == "postgresql"
        # Built once per table and dialect: building it cost as much as running it on 100
        # rows (a one-off timing: 0.94 → 0.44 ms), and a flush at 10,000 sessions runs 200 of them.
        key = (model.__tablename__, tuple(keys), postgres)
        stmt = _USAGE_UPSERTS.get(key)
        if stmt is None:
            table = model.__table__
            made = (pg_insert if postgres else sqlite_insert)(table)
            stmt = _USAGE_UPSERTS[key] = made.on_conflict_do_update(
                index_elements=[table.c[k] for k in keys],
                set_={
                    c: table.c[c] + getattr(made.excluded, c)
                    for c in ("seconds", "bytes_down", "bytes_up")
                },
            )
        conn.execute(stmt, rows)
        for obj in list(db.identity_map.values()):
            if isinstance(obj, model):
                db.expire(obj)

    def reconcile(self) -> str:
        """Make the kernel match the database now; returns a summary of what had to change.

        As the tick's: the kernel and the database are read and the plan worked out without
        the engine lock (a full read with leaf checks takes tens of milliseconds with a
        thousand clients), and the plan is applied under it only if no kernel change
        happened meanwhile; after three such misses (logins back to back), under the lock."""
        for _ in range(RECONCILE_ATTEMPTS):
            with self.lock:
                generation = self._generation
            snap = self.dp.snapshot()
            with Session(self.db) as db:
                now = self.clock()
                wanted = [self._wanted(s, now) for s in self._rows(db)]
                blocked = self._blocked(db)
            plan = make_plan(wanted, blocked, snap, self.network, self.pool)
            with self.lock:
                if generation == self._generation:
                    return self._reconcile(wanted, blocked, snap, made=plan)
        with self.lock:
            now = self.clock()
            with Session(self.db) as db:
                wanted = [self._wanted(s, now) for s in self._rows(db)]
                blocked = self._blocked(db)
            return self._reconcile(wanted, blocked, self.dp.snapshot())

    def _reconcile(
        self,
        wanted: builtins.list[Wanted],
        blocked: set[str],
        snap: Snapshot,
        expected: bool = False,
        made: Plan | None = None,
    ) -> str:
        """``expected``: a speed window began or ended, so classes are due to change;
        ``made``: the plan, already worked out from these."""
        wanted_ips = {w.ip for w in wanted}
        for sid, live in list(self.live.items()):
            if live.ip not in wanted_ips:
                self.live.pop(sid)
        plan = (
            made if made is not None else make_plan(wanted, blocked, snap, self.network, self.pool)
        )
        if plan.empty:
            return ""
        if expected:
            log.info("speed schedule: kernel changed: %s", plan.summary())
        else:
            log.warning("reconcile: kernel differed from database: %s", plan.summary())
        self._apply(plan)
        return plan.summary()

    def _apply(self, plan: Plan) -> None:
        """Every kernel change goes through here, so that a tick whose kernel read overlapped
        it (before, during or after) sees the generation move and reads again."""
        self._generation += 1
        self._touched |= self._minors_of(plan)
        try:
            final = self.dp.apply(plan)
            self._count_late(final, removed={*plan.down_del, *plan.up_del})
        finally:
            self._generation += 1
            self._ending.clear()  # a class that stayed counts on for its next session

    def _minors_of(self, plan: Plan) -> set[int]:
        """The client classes a change touches (made, changed, removed, or their session's
        start or end read them)."""
        minors = {c.minor for c in (*plan.down_set, *plan.up_set)}
        minors.update(plan.down_del, plan.up_del)
        for c in (*plan.add_clients, *plan.del_clients):
            with contextlib.suppress(ValueError):
                minors.add(shaping.client_minor(c.ip, self.network))
        return minors

    def _count_late(
        self,
        final: dict[int, tuple[ClassReading | None, ClassReading | None]],
        removed: set[int],
    ) -> None:
        """What the released classes of ended sessions passed between the session's end and
        the change's final reading: added to the session (and its device's day and hour) at
        the next flush, which the next tick makes. A class that stays (the pool's, not in
        ``removed``) may still pass what was queued for the session: it drains to it."""
        now = self.clock()
        when = (now, self.today(now), now.replace(minute=0, second=0, microsecond=0))
        for minor, (down, up) in final.items():
            live = self._ending.pop(minor, None)
            if live is None:
                continue
            got = (self._delta("down", minor, down), self._delta("up", minor, up))
            if got != (0, 0):
                self._charge(live, got, 0.0, when)
                self._late[live.session_id] = live
            if minor not in removed:
                self._draining[minor] = live

    # -- time without a real-time clock (issue #11) -----------------------------------------

    def _watch_clock(self, now: dt.datetime, stepped: dt.timedelta | None = None) -> None:
        """Follow a step of the wall clock before stamping anything on it (a tick, a login):
        a session started on the new clock must not be moved as if stamped on the old one.

        In a transaction of its own, committed before the caller's: the clock watch has
        taken the step, so a refused login's rollback must not undo the moves (the soak
        found every running voucher session ended at the tick after such a refusal)."""
        if stepped is None and self._epoch_start is not None:
            stepped = self.clock_watch.step(now)
        if stepped is not None:
            with Session(self.db) as db, db.begin():
                self._follow_step(db, stepped, now)

    def _follow_step(self, db: Session, step: dt.timedelta, now: dt.datetime) -> None:
        """The wall clock was stepped by ``step`` (``now`` is already on the new clock).

        What was stamped on the old clock since the engine started moves with it, so that
        what a villager has left is what really passed, not what the clock claims: every
        running session's end and last activity, and the validity (first use, end) of the
        vouchers first used since the start.
        A forward step of days then neither ends sessions nor vouchers at this tick, and a
        step back does not extend them. A voucher first used earlier keeps its end — a date
        in the calendar, stamped on a clock we have no reason to doubt — and a session of it
        ends no later than it."""
        since = self._epoch_start
        # The engine's start, on the new clock: a voucher moved now is moved again by the
        # next step (a clock a year ahead, then corrected, puts it back where it was).
        self._epoch_start = since + step if since is not None else now
        self.last_step = (now, step.total_seconds())
        resumed = {r.voucher_id for r in self.resumable.values() if r.voucher_id is not None}
        moved, moved_resumable = 0, set[int]()
        if since is not None:
            for ids in self._move_vouchers(db, step, since, now - step):
                moved += len(ids)
                moved_resumable.update(resumed.intersection(ids))
        ends = {
            vid: end
            for vid, end in db.execute(
                select(Voucher.id, Voucher.expires_at).where(
                    Voucher.id.in_({s.voucher_id for s in self._active(db)} - {None})
                )
            )
        }
        active = self._active(db)
        for sess in active:
            if sess.expires_at is not None:
                sess.expires_at += step
                end = ends.get(sess.voucher_id) if sess.voucher_id is not None else None
                if end is not None and sess.expires_at > end:
                    sess.expires_at = end
            if sess.last_activity_at is not None:
                sess.last_activity_at += step
            live = self.live.get(sess.id)
            if live is not None and live.last_activity is not None:
                live.last_activity += step
        if self.started_at is not None:
            self.started_at += step
        for mac, r in list(self.resumable.items()):
            if r.voucher_id in moved_resumable and r.until is not None:
                self.resumable[mac] = _Resumable(r.tier, r.voucher_id, r.day, r.until + step)
        log.warning(
            "clock stepped by %+.0f s (now %s): %d running sessions and %d vouchers first used "
            "since the start (%s on the old clock) moved with it",
            step.total_seconds(),
            iso(now),
            len(active),
            moved,
            iso(since),
        )

    @staticmethod
    def _move_vouchers(
        db: Session, step: dt.timedelta, since: dt.datetime, before: dt.datetime
    ) -> Iterator[builtins.list[int]]:
        """Move the first use and end of the vouchers first used from ``since`` until
        ``before`` by ``step``, ``STEP_VOUCHER_CHUNK`` at a time in id order; yields each
        chunk's ids. Their number grows with every voucher sold since the engine started:
        a chunk bounds what one step holds at once, whatever the uptime."""
        conn = db.connection()
        after = 0
        while True:
            rows = conn.execute(
                _STEPPED_VOUCHERS,
                {"since": since, "before": before, "after": after, "chunk": STEP_VOUCHER_CHUNK},
            ).all()
            if not rows:
                return
            conn.execute(
                _MOVE_VOUCHER,
                [
                    {
                        "vid": vid,
                        "first": first + step,
                        "end": end + step if end is not None else None,
                    }
                    for vid, first, end in rows
                ],
            )
            yield [vid for vid, _, _ in rows]
            after = rows[-1][0]

    # -- online time ---------------------------------------------------------------------

    def _count_online(self, terms: dict[int, OnlineTerms], busy: set[int], step: float) -> None:
        """Charge ``step`` monotonic seconds to every online-time voucher one of whose
        sessions moved traffic in this tick (``busy``, found by the accounting) — once per
        voucher, however many of its devices are on (the time is the voucher's, as
        Mikhmon's shared users). A tick without traffic is not charged: a phone that sits
        idle (until its idle timeout, or after it was let out again without the portal
        because it is still on the LAN) costs nothing. ``terms``: the running online-time
        vouchers', read with the tick's rows."""
        self._online = dict(terms)
        for voucher_id in busy & set(self._online):
            self.online_pending[voucher_id] = self.online_pending.get(voucher_id, 0.0) + step

    def _online_left(self, voucher_id: int | None) -> float | None:
        """Seconds of online time the voucher has left, what is not yet written included;
        None: not an online-time voucher."""
        if voucher_id is None or voucher_id not in self._online:
            return None
        terms = self._online[voucher_id]
        return terms.total - terms.used - self.online_pending.get(voucher_id, 0.0)

    def _flush_online(self, db: Session) -> None:
        """Write the whole seconds counted; the fractions wait for the next flush."""
        whole = {vid: int(p) for vid, p in self.online_pending.items() if int(p)}
        if not whole:
            return
        add_online_seconds(db.connection(), whole)
        for vid, n in whole.items():
            self.online_pending[vid] -= n
            if vid in self._online:
                t = self._online[vid]
                self._online[vid] = OnlineTerms(t.total, max(0, t.used + n))
        for vid in [v for v, p in self.online_pending.items() if p == 0.0]:
            del self.online_pending[vid]

    def flush(self) -> None:
        """Write pending accounting now (shutdown)."""
        with self.lock, Session(self.db) as db, db.begin():
            self._flush(db, self._rows(db))

    # -- lookups ---------------------------------------------------------------------------

    def _tier(self, name: str, trusted: bool = False) -> Tier:
        tier = self.config.tiers.get(name) if isinstance(name, str) else None
        if tier is None and trusted and name == UNLIMITED_TIER:
            return self._unlimited_tier()
        if tier is None:
            raise UsageError(f"tier: unknown tier {name!r} (known: {', '.join(self.config.tiers)})")
        return tier

    def _unlimited_tier(self) -> Tier:
        """``unlimited``: the uplink's rates (the class never holds the device back more
        than the uplink itself does), no timeouts, no allowance."""
        net = self.config.network
        return Tier(
            name=UNLIMITED_TIER,
            down_kbps=net.uplink_down_kbps,
            up_kbps=net.uplink_up_kbps,
            session_minutes=0,
            idle_minutes=0,
            daily_minutes=0,
            daily_mb=0,
        )

    def _identify(self, ip: str | None, mac: str | None) -> tuple[str, str]:
        """(mac, ip) of a device; the MAC comes from the kernel, never from the client."""
        if ip is None and mac is None:
            raise UsageError("ip: give ip or mac")
        if ip is not None:
            ip = self._check_ip(ip)
            if mac is not None:  # an operator named both: no need to ask the LAN
                return normalize_mac(mac), ip
            seen = self.dp.mac_of(ip)
            if seen is None:
                raise NotFound(f"no device answers at {ip}", code=ErrorCode.UNKNOWN_DEVICE)
            return seen, ip
        mac = normalize_mac(mac)  # type: ignore[arg-type]
        ip = self.dp.ip_of(mac)
        if ip is None:
            raise NotFound(
                f"{mac} has no address on the LAN; give its IP", code=ErrorCode.UNKNOWN_DEVICE
            )
        return mac, self._check_ip(ip)

    def _senders(self, ip: str) -> set[str]:
        """The MACs that talked to the portal from ``ip`` lately (see _check_requester)."""
        return self.dp.macs_seen_at(self._check_ip(ip))

    def _senders_if_by_address(self, ip: str | None, mac: str | None) -> set[str] | None:
        """For a request that names only an address: who sent from it lately. Read before
        taking the lock, so that logins do not queue behind it. None when the request names
        a MAC (or no address): there is no requester to check."""
        return self._senders(ip) if mac is None and ip is not None else None

    def _requested_session(
        self, db: Session, ip: str | None, mac: str | None, seen: set[str] | None
    ) -> ClientSession:
        """The running session a deauthorize or extend acts on; refused when a request by
        address alone comes from another device than the session's (``seen``)."""
        sess = self._find_active(db, ip, mac)
        if sess is None:
            raise NotFound("no running session for that device", code=ErrorCode.NO_SESSION)
        if seen is not None:
            self._check_requester(sess.ip, sess.mac, seen)
        return sess

    def _check_requester(self, ip: str, mac: str, seen: set[str]) -> None:
        """A request that names only an address (the portal's: it knows the request's source
        address, never its MAC) acts on ``mac`` only if no other MAC has talked to the portal
        from that address lately (``seen``). The neighbour entry cannot say: a running
        session's is pinned to the session's MAC, whoever sends from its address."""
        others = seen - {mac}
        if others:
            log.warning(
                "refused a request by address for %s at %s: %s sent from that address too",
                mac,
                ip,
                ", ".join(sorted(others)),
            )
            raise Refused(
                f"another device is using {ip}; nothing done for {mac}",
                code=ErrorCode.NOT_YOUR_SESSION,
            )

    def _find_active(self, db: Session, ip: str | None, mac: str | None) -> ClientSession | None:
        q = select(ClientSession).where(ClientSession.ended_at.is_(None))
        if mac is not None:
            q = q.where(ClientSession.mac == normalize_mac(mac))
        elif ip is not None:
            q = q.where(ClientSession.ip == self._check_ip(ip))
        else:
            raise UsageError("ip: give ip or mac")
        return db.scalar(q)

    def _cap_used(self, db: Session, s: AnySession, vouchers: dict[int, int] | None = None) -> int:
        """What counts against ``bytes_limit``: the whole voucher's use (all its devices and
        sessions) for a voucher session, else this session's."""
        if s.voucher_id is None:
            return self._session_bytes(s)
        if vouchers is None or s.voucher_id not in vouchers:
            vouchers = self._voucher_bytes(db, {s.voucher_id})
        return vouchers.get(s.voucher_id, 0)

    def _session_bytes(self, s: AnySession) -> int:
        live = self.live.get(s.id) if s.ended_at is None else None
        total = s.bytes_down + s.bytes_up
        return total + (live.bytes_down + live.bytes_up if live else 0)

    def _describe(self, db: Session, s: AnySession, now: dt.datetime) -> SessionInfo:
        live = self.live.get(s.id) if s.ended_at is None else None
        speed = self._speed_of(s, now)
        faster = (speed.down_kbps, speed.up_kbps) > (s.down_kbps, s.up_kbps)
        out: SessionInfo = {
            "id": s.id,
            "mac": s.mac,
            "ip": s.ip,
            "tier": s.tier,
            "source": s.source,
            "state": "active" if s.ended_at is None else "ended",
            "started_at": iso(s.started_at),
            "expires_at": iso(s.expires_at),
            "ended_at": iso(s.ended_at),
            "end_reason": s.end_reason,
            "down_kbps": speed.down_kbps,
            "up_kbps": speed.up_kbps,
            "speed_window": None if speed.window is None else "faster" if faster else "slower",
            "speed_until": iso(speed.until),
            "bytes_down": s.bytes_down + (live.bytes_down if live else 0),
            "bytes_up": s.bytes_up + (live.bytes_up if live else 0),
            "seconds_remaining": None,
            "bytes_remaining": None,
            "bytes_limit": s.bytes_limit,
            "voucher_id": s.voucher_id,
            "rate_down_bps": live.rate_down_bps if live else 0,
            "rate_up_bps": live.rate_up_bps if live else 0,
            "online_seconds_remaining": None,
            "last_activity_at": iso(
                max(
                    t
                    for t in (s.last_activity_at, live.last_activity if live else None)
                    if t is not None
                )
            ),
        }
        if s.ended_at is None:
            remaining = []
            if s.expires_at is not None:
                remaining.append(max(0, int((s.expires_at - now).total_seconds())))
            if s.voucher_id is not None and s.voucher_id not in self._online:
                self._online.update(online_terms(db.connection(), [s.voucher_id]))
            online_left = self._online_left(s.voucher_id)
            if online_left is not None:
                out["online_seconds_remaining"] = max(0, int(online_left))
                remaining.append(max(0, int(online_left)))
            tier = self.config.tiers.get(s.tier)
            limited = tier is not None and (tier.daily_minutes or tier.daily_mb)
            if tier is not None and limited and s.source is not Source.TRUSTED:
                left = self.allowance(db, s.mac, tier, now)
                if left["seconds_left"] is not None:
                    remaining.append(left["seconds_left"])
                bytes_left = [b for b in (left["bytes_left"],) if b is not None]
            else:
                bytes_left = []
            if s.bytes_limit is not None:
                bytes_left.append(max(0, s.bytes_limit - self._cap_used(db, s)))
            out["bytes_remaining"] = min(bytes_left) if bytes_left else None
            out["seconds_remaining"] = min(remaining) if remaining else None
        return out


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000
