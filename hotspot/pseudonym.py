"""Keyed pseudonyms: what stands for a device (MAC) in every report and API.

``pseudonym = hex(HMAC-SHA256(key, "hotspot-desa/client/v1\\0" + mac))[:16]`` — stable on one
gateway within one key period (so "users per day" and repeat visits in a month can be
counted), unlinkable across gateways and across periods, not reversible without the key.

The key is *not* the sync secret: the collector knows that secret (it checks signatures with
it), and with it could try every MAC of a vendor prefix (2^24 guesses) and undo a pseudonym.

**Keys that expire** (issue #14). A gateway draws a new random key (32 bytes) for every local
calendar period of the village (``[privacy] pseudonym_period``: ``month`` by default, ``week``
— ISO weeks, Monday to Sunday — or ``day``; periods begin at the village's midnight, in its
time zone). Records are named with the key of the period their *hour* falls in, and carry that
period (``key_period``: ``2026-11``, ``2026-W48``, ``2026-11-30``). A period's key is kept only
while something may still have to be named with it: the sync agent destroys it in the collect
that has read that period's last hours in their final form (the hour's end plus the outbox's
rescan window, :data:`sync.outbox.RESCAN`) — already-queued records hold pseudonyms, not MACs,
and need no key. Destroying overwrites the row before deleting it, with SQLite's
``secure_delete`` on, then truncates the WAL (:meth:`KeyRing.scrub`): the key is in no file
of the database any more, and nothing it could be derived from is kept. Keys are never
destroyed while the kernel says the clock is not synchronised (a clock a year ahead must not
destroy this month's key); hours stamped in a period whose key is gone (a clock set back
across the boundary) are not reported, and the log says how many.

Keys live in the gateway's database (``sync_state``, ``pseudonym_key@<period>``) and never
leave the gateway. The key of a gateway from before rotation (``pseudonym_key``) becomes the
current period's key at the first start, and earlier periods count as destroyed (their records
were sent already). ``[privacy] pseudonym_key``, when set, is a fixed key for every period:
no rotation, no destruction (the demo, tests); the records still carry their period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import zoneinfo
from collections.abc import Callable

from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.mac import normalize_mac
from hotspot.model_sync import SyncState
from hotspot.timeutil import local_time, naive_utc, parse_utc, utcnow

log = logging.getLogger(__name__)

STATE_KEY = "pseudonym_key"  # the one key of a gateway from before rotation
PERIOD_KEY = "pseudonym_key@"  # + period: that period's key
DESTROYED_THROUGH = "pseudonym_destroyed_through"  # naive UTC: keys of periods ending by then
_PREFIX = b"hotspot-desa/client/v1\0"


# -- periods ----------------------------------------------------------------------------------


def period_of(ts: dt.datetime, tz: zoneinfo.ZoneInfo, period: str) -> str:
    """The label of the local calendar period (``month``, ``week``, ``day``) that the
    naive-UTC moment ``ts`` falls in: ``2026-11``, ``2026-W48``, ``2026-11-30``."""
    local = local_time(ts, tz).date()
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return local.isoformat()


def period_bounds(label: str, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of a period label as naive UTC: local midnights of the village."""
    if "-W" in label:
        iso_year, iso_week = label.split("-W")
        first = dt.date.fromisocalendar(int(iso_year), int(iso_week), 1)
        last = first + dt.timedelta(days=7)
    elif label.count("-") == 2:
        first = dt.date.fromisoformat(label)
        last = first + dt.timedelta(days=1)
    else:
        year, month = (int(x) for x in label.split("-"))
        first = dt.date(year, month, 1)
        last = dt.date(year + month // 12, month % 12 + 1, 1)

    def midnight(day: dt.date) -> dt.datetime:
        return naive_utc(dt.datetime(day.year, day.month, day.day, tzinfo=tz))

    return midnight(first), midnight(last)


def pseudonym(key: bytes, mac: str) -> str:
    """The pseudonym of ``mac`` (any common notation) under ``key``: 16 hex digits."""
    mac = normalize_mac(mac)
    return hmac.new(key, _PREFIX + mac.encode(), hashlib.sha256).hexdigest()[:16]


class KeyRing:
    """The gateway's pseudonym keys by period (module docstring). ``clock``: the moment that
    says which period is the current one (the adoption of a key from before rotation)."""

    def __init__(
        self,
        config: Config,
        db: Engine,
        *,
        fixed: bytes | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        adopt: bool = True,
    ):
        self.db = db
        self.tz = config.village.tz
        self.period = config.privacy.pseudonym_period
        if fixed is None and config.privacy.pseudonym_key:
            fixed = config.privacy.pseudonym_key.encode()
        self.fixed = fixed
        self.clock = clock
        self._keys: dict[str, bytes | None] = {}
        if fixed is None and adopt:
            self._adopt_legacy()

    @property
    def rotating(self) -> bool:
        return self.fixed is None

    def label(self, ts: dt.datetime) -> str:
        return period_of(ts, self.tz, self.period)

    def _adopt_legacy(self) -> None:
        """A gateway from before rotation: its key becomes the current period's, and the
        periods before it count as destroyed (their records were sent under that key)."""
        with Session(self.db) as s:
            if s.get(SyncState, STATE_KEY) is None:
                return
        now = self.clock()
        label = self.label(now)
        start, _ = period_bounds(label, self.tz)
        try:
            with Session(self.db) as s, s.begin():
                legacy = s.get(SyncState, STATE_KEY)
                if legacy is None:
                    return
                if s.get(SyncState, PERIOD_KEY + label) is None:
                    s.add(SyncState(name=PERIOD_KEY + label, value=legacy.value, updated_at=now))
                if s.get(SyncState, DESTROYED_THROUGH) is None:
                    s.add(
                        SyncState(name=DESTROYED_THROUGH, value=start.isoformat(), updated_at=now)
                    )
                s.delete(legacy)
        except IntegrityError:
            pass  # another process adopted it first
        log.info(
            "pseudonym key of this gateway kept for period %s; renewed every %s", label, self.period
        )

    def destroyed_through(self, s: Session) -> dt.datetime | None:
        row = s.get(SyncState, DESTROYED_THROUGH)
        return parse_utc(row.value) if row is not None else None

    def key(self, label: str, create: bool = True) -> bytes | None:
        """The key of period ``label`` (made now if it has none yet and ``create``), or None
        once it was destroyed."""
        if self.fixed is not None:
            return self.fixed
        if label in self._keys:
            return self._keys[label]
        with Session(self.db) as s:
            row = s.get(SyncState, PERIOD_KEY + label)
            if row is not None:
                self._keys[label] = bytes.fromhex(row.value)
                return self._keys[label]
            through = self.destroyed_through(s)
        if through is not None and period_bounds(label, self.tz)[1] <= through:
            self._keys[label] = None  # gone: never made again (two names for one device)
            return None
        if not create:
            return None
        try:
            with Session(self.db) as s, s.begin():
                s.add(
                    SyncState(
                        name=PERIOD_KEY + label, value=secrets.token_hex(32), updated_at=utcnow()
                    )
                )
        except IntegrityError:
            pass  # another process made it first: use theirs
        return self.key(label, create=False)

    def current(self) -> bytes:
        """The key of the period now is in (made if needed)."""
        key = self.key(self.label(self.clock()))
        if key is None:  # the clock stands in a destroyed period: the newest one's key
            raise LookupError("the current period's pseudonym key was destroyed")
        return key

    def destroy_through(self, s: Session, cutoff: dt.datetime) -> list[str]:
        """In the caller's transaction: destroy the keys of every period that ended at or
        before ``cutoff`` (naive UTC); returns their labels. Each row is overwritten, then
        deleted with ``secure_delete`` on (SQLite zeroes the freed cells);
        :meth:`scrub` after the commit takes the WAL's copies too."""
        if self.fixed is not None:
            return []
        start, _ = period_bounds(self.label(cutoff), self.tz)  # periods ending by then
        gone = []
        for row in s.scalars(select(SyncState).where(SyncState.name.startswith(PERIOD_KEY))):
            label = row.name[len(PERIOD_KEY) :]
            if period_bounds(label, self.tz)[1] <= start:
                gone.append(label)
        through = self.destroyed_through(s)
        if through is not None and through >= start and not gone:
            return []
        if s.get_bind().dialect.name == "sqlite":
            s.execute(text("PRAGMA secure_delete = ON"))
        names = [PERIOD_KEY + label for label in gone]
        if names:
            s.execute(update(SyncState).where(SyncState.name.in_(names)).values(value="0" * 64))
            s.flush()
            s.execute(delete(SyncState).where(SyncState.name.in_(names)))
        if through is None or through < start:
            mark = s.get(SyncState, DESTROYED_THROUGH)
            if mark is None:
                s.add(
                    SyncState(name=DESTROYED_THROUGH, value=start.isoformat(), updated_at=utcnow())
                )
            else:
                mark.value, mark.updated_at = start.isoformat(), utcnow()
        for label in gone:
            self._keys[label] = None
        return gone

    def scrub(self) -> bool:
        """After destroying keys: checkpoint and truncate the WAL, where the old pages (with
        the keys) still are. False when a reader kept it from completing (the next collect
        tries again)."""
        if self.db.dialect.name != "sqlite":
            return True
        try:
            with self.db.connect() as conn:
                busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        except OperationalError as exc:
            log.warning("pseudonym keys: WAL not truncated: %s", str(exc).splitlines()[0])
            return False
        return not busy


def stored_key(config: Config, db: Engine) -> bytes | None:
    """The current period's pseudonym key if it exists already (reads only), else None."""
    if config.privacy.pseudonym_key:
        return config.privacy.pseudonym_key.encode()
    ring = KeyRing(config, db, adopt=False)  # a page's GET writes nothing
    key = ring.key(ring.label(utcnow()), create=False)
    if key is None:  # not adopted yet: the key from before rotation is still this period's
        with Session(db) as s:
            row = s.get(SyncState, STATE_KEY)
            key = bytes.fromhex(row.value) if row is not None else None
    return key


def load_key(config: Config, db: Engine) -> bytes:
    """The current period's pseudonym key (see the module docstring); created if needed."""
    return KeyRing(config, db).current()


class Pseudonymizer:
    """Caches pseudonyms of one key (HMAC is cheap, but a report may name a device often).

    The agent keeps one for each key period it reports, for as long as it runs: the cache
    starts over past ``limit`` MACs, so a period's MAC changes (randomised MACs, a curious
    laptop cycling its address) cannot grow it without end. A village sees a few thousand
    devices, so the limit is rarely reached."""

    def __init__(self, key: bytes, limit: int = 4096):
        self.key = key
        self.limit = limit
        self._cache: dict[str, str] = {}

    def __call__(self, mac: str) -> str:
        p = self._cache.get(mac)
        if p is None:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            p = self._cache[mac] = pseudonym(self.key, mac)
        return p

    def __len__(self) -> int:
        return len(self._cache)


class PeriodPseudonymizer:
    """Pseudonyms of device-hours: each with its period's key (a :class:`KeyRing`)."""

    def __init__(self, ring: KeyRing):
        self.ring = ring
        self._by_period: dict[str, Pseudonymizer | None] = {}

    def __call__(self, mac: str, hour: dt.datetime) -> tuple[str, str] | None:
        """(pseudonym, period), or None when that period's key was destroyed."""
        label = self.ring.label(hour)
        if label not in self._by_period:
            key = self.ring.key(label)
            self._by_period[label] = Pseudonymizer(key) if key is not None else None
        named = self._by_period[label]
        if named is None:
            return None
        return named(mac), label

    def forget(self, labels: list[str]) -> None:
        for label in labels:
            self._by_period[label] = None
