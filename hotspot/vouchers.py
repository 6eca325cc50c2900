"""Vouchers: packages, batches of codes, and redemption exactly once.

Used by the portal (redemption), and later by the operator console and the CLI (packages,
batches, printing, voiding). Kernel-free: the gateway is reached only through an object with
``call(op, **args)`` (a :class:`hotspot.control.ControlClient`, or a fake in tests).

Codes
    10 symbols from a 31-symbol alphabet without the look-alikes 0/O and 1/I/L (digits 2–9
    and the letters A–Z but I, L, O): 31**10 ≈ 2**49.5 codes. Shown as ``ABCD-EFGH-JK``.
    What a villager types is forgiving: case, spaces and dashes are ignored. A look-alike
    symbol cannot be entered by mistake for a valid one, because no code contains one.

Storage
    The database never holds a code, only ``HMAC-SHA256(key, code)`` (the lookup hash).
    The key is a file outside the database (``[portal] voucher_key_file``), so a copied or
    leaked database reveals no unsold code, and a guess cannot be checked offline.
    Codes are *derived*: ``code = HMAC(key, "code|" + batch salt + "|" + serial)`` mapped
    onto the alphabet. Whoever has both the key and the database can print a batch's sheet
    again (:func:`batch_codes`); a random per-batch salt keeps future batches unguessable
    even from the key alone.

Redemption (:meth:`VoucherService.redeem`)
    One database write transaction (``BEGIN IMMEDIATE`` on SQLite, a row lock elsewhere)
    decides, and a conditional ``UPDATE … WHERE state = 'new'`` with its row count claims
    the first use: two phones with the same code at the same moment are serialized; the
    first wins, the second finds the voucher bound to a device that was bound seconds ago and
    is told "already in use" (or joins, while the package allows more devices).
    Re-entering a running code on a device that uses it re-authorizes it (after an idle
    timeout, or at a new address). On a *new* MAC — phones randomise it — the code moves
    there when one of its devices has been away (no traffic) for a while; a device that is
    still using it is never displaced.
    A second code on a device that runs a single-device voucher tops it up: the remaining
    time and data of the first are carried into the second (time adds; data adds; a package
    without a data quota makes the sum unlimited), and the first is marked ``merged``.
    Then the gateway is asked to authorize; if it refuses (a blocked device, …) the claim
    is undone, so a refused phone does not burn a voucher.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotspot.config import Config, PackageConfig
from hotspot.errors import HotspotError, NotFound, UsageError
from hotspot.model import (ClientSession, Package, RedeemAttempt, Voucher, VoucherBatch,
                           VoucherDevice, VoucherState, normalize_mac, utcnow)

log = logging.getLogger(__name__)

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
GROUPS = (4, 4, 2)
CODE_BITS = CODE_LENGTH * 4.954  # log2(31) per symbol: 49.5 bits
MB = 1_000_000
MAX_BATCH = 5000

# A binding younger than this is never displaced (two phones racing for one code).
BIND_LEASE_SECONDS = 60
# A device whose session saw no traffic for this long (or that has none) is "away": its
# place on a voucher may go to a new MAC (the same phone after MAC randomisation).
AWAY_SECONDS = 180

_IGNORED = str.maketrans("", "", " -_.\t\n\r\u00a0\u2010\u2011\u2012\u2013\u2014")


class Gateway(Protocol):
    def call(self, op: str, **args: Any) -> Any: ...


class VoucherError(HotspotError):
    """A code that cannot be used; ``code`` says why (the portal picks its message by it):

    ``voucher-unknown``   no such code (wrong, mistyped: one message for all of them)
    ``voucher-used``      used by another device (up to the package's limit)
    ``voucher-expired``   its time ran out, or it waited too long for its first use
    ``voucher-exhausted`` its data quota is used up
    ``voucher-void``      withdrawn by the BUMDes
    """

    code = "voucher-unknown"


class RateLimited(VoucherError):
    code = "rate-limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


# -- codes ------------------------------------------------------------------------------------

def normalize_code(text: str) -> str | None:
    """What the user typed → the bare code, or None when it cannot be a code."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    bare = text.translate(_IGNORED).upper()
    if len(bare) != CODE_LENGTH or any(ch not in ALPHABET for ch in bare):
        return None
    return bare


def format_code(code: str) -> str:
    """``ABCDEFGHJK`` → ``ABCD-EFGH-JK`` (how it is printed and shown)."""
    parts, i = [], 0
    for size in GROUPS:
        parts.append(code[i:i + size])
        i += size
    return "-".join(parts)


def code_hash(key: bytes, code: str) -> str:
    return hmac.new(key, b"lookup|" + code.encode(), hashlib.sha256).hexdigest()


def derive_code(key: bytes, salt: str, serial: int) -> str:
    digest = hmac.new(key, f"code|{salt}|{serial}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest, "big")  # 256 bits onto 31**10 (≈2**49.5): bias < 2**-200
    out = []
    for _ in range(CODE_LENGTH):
        n, r = divmod(n, len(ALPHABET))
        out.append(ALPHABET[r])
    return "".join(out)


def load_key(path: str | os.PathLike[str], create: bool = False, group: str | None = None,
             what: str = "voucher key") -> bytes:
    """A secret key file (32 random bytes, stored as hex): the voucher key, or the portal's
    cookie secret. ``create`` writes a new one if the file is missing — atomically, so
    workers starting together agree on one key."""
    p = Path(path)
    try:
        text = p.read_text().strip()
    except PermissionError:
        raise HotspotError(f"{what} {p} is not readable by this user", code="bad-key") from None
    except FileNotFoundError:
        if not create:
            raise HotspotError(f"{what} {p} is missing (`hotspot portal run` creates it)",
                               code="no-key") from None
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if group:
            import grp

            try:
                os.chown(tmp, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError):
                pass
        try:
            os.link(tmp, p)  # fails if another process won the race: then use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        text = p.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise HotspotError(f"{what} {p} is not hex", code="bad-key") from None
    if len(key) < 16:
        raise HotspotError(f"{what} {p} is too short", code="bad-key")
    return key


# -- packages ---------------------------------------------------------------------------------

def sync_packages(engine: Engine, packages: Iterable[PackageConfig],
                  clock: Callable[[], dt.datetime] = utcnow, *,
                  retire_missing: bool = False) -> int:
    """Write the packages of the config file into the database (insert or update by name);
    packages made in the console are left alone. With ``retire_missing``, packages that came
    from the file but are no longer in it are taken off sale (batches still refer to them,
    so they stay). Returns how many were written."""
    n = 0
    now = clock()
    packages = list(packages)
    if retire_missing:
        with engine.begin() as conn:
            res = conn.execute(update(Package).where(
                Package.source == "config", Package.active.is_(True),
                Package.name.not_in([p.name for p in packages]))
                .values(active=False, updated_at=now))
            n += res.rowcount or 0
    for pkg in packages:
        values = dict(title=pkg.title, price=pkg.price, tier=pkg.tier, hours=pkg.hours,
                      data_mb=pkg.data_mb or None, devices=pkg.devices,
                      shelf_days=pkg.shelf_days or None, active=True, source="config",
                      updated_at=now)
        for _ in range(2):
            with engine.begin() as conn:
                row = conn.execute(select(Package).where(Package.name == pkg.name)).first()
                if row is not None:
                    same = all(getattr(row, k) == v for k, v in values.items() if k != "updated_at")
                    if not same:
                        conn.execute(update(Package).where(Package.name == pkg.name)
                                     .values(**values))
                        n += 1
                    break
                try:
                    conn.execute(insert(Package).values(name=pkg.name, created_at=now, **values))
                    n += 1
                    break
                except IntegrityError:  # another worker inserted it: update instead
                    conn.rollback()
    return n


@dataclass(frozen=True)
class PackageInfo:
    id: int
    name: str
    title: str
    price: int
    tier: str
    hours: int
    data_mb: int | None
    devices: int


def list_packages(engine: Engine) -> list[PackageInfo]:
    """Packages for sale, cheapest first (the portal's price list)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Package).where(Package.active.is_(True))
                            .order_by(Package.price, Package.name)).all()
    return [PackageInfo(r.id, r.name, r.title, r.price, r.tier, r.hours, r.data_mb, r.devices)
            for r in rows]


# -- batches ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    id: int
    package: str
    count: int
    codes: list[str]  # formatted, serial 1.. in order
    valid_until: dt.datetime | None


def create_batch(engine: Engine, key: bytes, package: str | int, count: int, *,
                 note: str | None = None, created_by: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> Batch:
    """Generate ``count`` vouchers of ``package`` (name or id) in one transaction and return
    their codes — the only time they are handed out in clear (print them now, or again later
    with :func:`batch_codes`)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
        raise UsageError(f"count must be a whole number from 1 to {MAX_BATCH}")
    now = clock()
    for _attempt in range(3):
        salt = secrets.token_hex(16)
        codes = [derive_code(key, salt, serial) for serial in range(1, count + 1)]
        if len(set(codes)) != count:  # pragma: no cover - p ≈ count²/2**50
            continue
        try:
            with Session(engine) as db, db.begin():
                q = select(Package)
                q = q.where(Package.id == package) if isinstance(package, int) else \
                    q.where(Package.name == package)
                pkg = db.scalar(q)
                if pkg is None:
                    raise NotFound(f"no package {package!r}")
                valid_until = now + dt.timedelta(days=pkg.shelf_days) if pkg.shelf_days else None
                batch = VoucherBatch(package_id=pkg.id, package_name=pkg.name, price=pkg.price,
                                     tier=pkg.tier, hours=pkg.hours, data_mb=pkg.data_mb,
                                     devices=pkg.devices, count=count, salt=salt,
                                     created_at=now, valid_until=valid_until,
                                     note=(note or None) and note[:200],
                                     created_by=(created_by or None) and created_by[:64])
                db.add(batch)
                db.flush()
                db.execute(insert(Voucher), [
                    dict(batch_id=batch.id, serial=i, code_hash=code_hash(key, code),
                         state=VoucherState.NEW.value, created_at=now, valid_until=valid_until)
                    for i, code in enumerate(codes, start=1)])
                batch_id, name = batch.id, pkg.name
        except IntegrityError:  # pragma: no cover - a code collided with an older batch's
            continue
        log.info("batch %d: %d vouchers of %s", batch_id, count, name)
        return Batch(batch_id, name, count, [format_code(c) for c in codes], valid_until)
    raise HotspotError("could not generate unique codes; try again")  # pragma: no cover


def batch_codes(engine: Engine, key: bytes, batch_id: int,
                states: Iterable[str] | None = (VoucherState.NEW.value,)) -> list[tuple[int, str]]:
    """(serial, code) of a batch's vouchers again — unused ones by default — for reprinting.
    Needs the key: a database alone cannot do this."""
    states = list(states) if states is not None else None
    with engine.connect() as conn:
        batch = conn.execute(select(VoucherBatch).where(VoucherBatch.id == batch_id)).first()
        if batch is None:
            raise NotFound(f"no batch {batch_id}")
        q = select(Voucher.serial, Voucher.code_hash).where(Voucher.batch_id == batch_id)
        if states is not None:
            q = q.where(Voucher.state.in_(states))
        rows = conn.execute(q.order_by(Voucher.serial)).all()
    out = []
    for serial, stored in rows:
        code = derive_code(key, batch.salt, serial)
        if not hmac.compare_digest(code_hash(key, code), stored):
            raise HotspotError(f"batch {batch_id}: the voucher key is not the one it was made with",
                               code="bad-voucher-key")
        out.append((serial, format_code(code)))
    return out


def void_voucher(engine: Engine, voucher_id: int, reason: str = "",
                 clock: Callable[[], dt.datetime] = utcnow) -> bool:
    """Withdraw a voucher (lost sheet, refund). True if it changed."""
    with engine.begin() as conn:
        res = conn.execute(update(Voucher).where(Voucher.id == voucher_id,
                                                 Voucher.state != VoucherState.VOID.value)
                           .values(state=VoucherState.VOID.value, voided_at=clock(),
                                   void_reason=(reason or None) and reason[:200]))
        return res.rowcount == 1


# -- redemption -------------------------------------------------------------------------------

@dataclass
class Redemption:
    voucher_id: int
    package: str  # its name
    title: str  # what the price list calls it
    tier: str
    expires_at: dt.datetime
    bytes_limit: int | None
    session: dict[str, Any]  # the gateway's description of the new session
    first_use: bool = False
    joined: bool = False  # a further device on a multi-device voucher
    moved_from: str | None = None  # the MAC it moved from
    topped_up: int | None = None  # the voucher whose remainder it absorbed


@dataclass
class _Plan:
    voucher_id: int
    package: str
    title: str
    tier: str
    expires_at: dt.datetime
    bytes_total: int | None
    first_use: bool = False
    bound: bool = False  # this call added the binding
    joined: bool = False
    moved_from: str | None = None
    moved_binding: tuple[dt.datetime, dt.datetime] | None = None
    kick_old: bool = False
    merged: int | None = None


def _iso(ts: dt.datetime) -> str:
    return ts.replace(microsecond=0).isoformat() + "Z"


class VoucherService:
    """Redeems codes for the portal. Thread-safe (state lives in the database)."""

    def __init__(self, engine: Engine, key: bytes, gateway: Gateway, *,
                 clock: Callable[[], dt.datetime] = utcnow, attempts: int = 5,
                 window_seconds: int = 60, cooldown_seconds: int = 300):
        self.engine = engine
        self.key = key
        self.gateway = gateway
        self.clock = clock
        self.attempts = attempts
        self.window = dt.timedelta(seconds=window_seconds)
        self.cooldown = dt.timedelta(seconds=cooldown_seconds)
        self.sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def from_config(cls, config: Config, engine: Engine, key: bytes, gateway: Gateway,
                    **kw: Any) -> "VoucherService":
        p = config.portal
        assert p is not None
        return cls(engine, key, gateway, attempts=p.voucher_attempts,
                   window_seconds=p.voucher_window_seconds,
                   cooldown_seconds=p.voucher_cooldown_seconds, **kw)

    # -- the brake on guessing ----------------------------------------------------------------

    def retry_after(self, client: str) -> int:
        """Seconds this device must wait before its next attempt (0 = may try now)."""
        now = self.clock()
        with self.engine.connect() as conn:
            until = conn.execute(select(RedeemAttempt.blocked_until)
                                 .where(RedeemAttempt.client == client)).scalar()
        if until is None or until <= now:
            return 0
        return max(1, int((until - now).total_seconds() + 0.999))

    def _failed(self, client: str) -> None:
        """Count a wrong code; the ``attempts``-th within the window starts the cool-down."""
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            row = conn.execute(select(RedeemAttempt).where(RedeemAttempt.client == client)).first()
            window_start, failures, blocked = now, 0, None
            if row is not None:
                blocked = row.blocked_until
                if now - row.window_start < self.window:
                    window_start, failures = row.window_start, row.failures
            failures += 1
            if failures >= self.attempts:
                blocked, window_start, failures = now + self.cooldown, now, 0
            values = dict(window_start=window_start, failures=failures, blocked_until=blocked)
            if row is None:
                conn.execute(insert(RedeemAttempt).values(client=client, **values))
            else:
                conn.execute(update(RedeemAttempt).where(RedeemAttempt.client == client)
                             .values(**values))
            conn.commit()

    # -- the transaction ----------------------------------------------------------------------

    def _begin_write(self, conn: Connection) -> None:
        """Take the database's write lock first, so that everything read afterwards in this
        transaction stays true until commit (SQLite: one writer at a time)."""
        if self.sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def redeem(self, code: str, *, ip: str, mac: str,
               live_session: dict[str, Any] | None = None) -> Redemption:
        """Use ``code`` on the device ``mac`` at ``ip`` (both from the gateway, never from the
        request). ``live_session`` is the gateway's current description of the device's
        session, if the caller has it (its byte counts are fresher than the database's).
        Raises :class:`VoucherError` (a code the user gets a message for), or what the
        gateway raised (a blocked device, the gateway unreachable)."""
        mac = normalize_mac(mac)
        wait = self.retry_after(mac)
        if wait:
            raise RateLimited(f"too many wrong codes from {mac}; wait {wait} s", wait)
        bare = normalize_code(code)
        if bare is None:
            self._failed(mac)
            raise VoucherError("not a voucher code", code="voucher-unknown")
        digest = code_hash(self.key, bare)
        with self.engine.connect() as conn:
            found = conn.execute(select(Voucher.id).where(Voucher.code_hash == digest)).scalar()
        if found is None:
            self._failed(mac)
            raise VoucherError("no such voucher", code="voucher-unknown")
        plan = self._claim(found, mac, live_session)
        try:
            session = self.gateway.call(
                "authorize", ip=ip, tier=plan.tier, source="voucher",
                expires_at=_iso(plan.expires_at), bytes_limit=self._bytes_limit(plan),
                voucher_id=plan.voucher_id)
        except BaseException:
            self._undo(plan, mac)
            raise
        if plan.kick_old and plan.moved_from:
            try:
                self.gateway.call("deauthorize", mac=plan.moved_from, reason="replaced")
            except HotspotError as exc:  # it left by itself meanwhile: fine
                log.info("voucher %d: old device %s: %s", plan.voucher_id, plan.moved_from,
                         exc.message)
        log.info("voucher %d used by %s at %s%s%s%s", plan.voucher_id, mac, ip,
                 " (first use)" if plan.first_use else "",
                 f" (moved from {plan.moved_from})" if plan.moved_from else "",
                 f" (topped up voucher {plan.merged})" if plan.merged else "")
        return Redemption(plan.voucher_id, plan.package, plan.title, plan.tier, plan.expires_at,
                          self._bytes_limit(plan), session, first_use=plan.first_use,
                          joined=plan.joined, moved_from=plan.moved_from, topped_up=plan.merged)

    def _used_bytes(self, conn: Connection, voucher_id: int,
                    live: dict[str, Any] | None = None) -> int:
        used = conn.execute(select(func.coalesce(func.sum(
            ClientSession.bytes_down + ClientSession.bytes_up), 0))
            .where(ClientSession.voucher_id == voucher_id)).scalar() or 0
        if live and live.get("voucher_id") == voucher_id and live.get("id") is not None:
            stored = conn.execute(select(ClientSession.bytes_down + ClientSession.bytes_up)
                                  .where(ClientSession.id == live["id"])).scalar() or 0
            fresh = int(live.get("bytes_down") or 0) + int(live.get("bytes_up") or 0)
            used += max(0, fresh - stored)
        return int(used)

    def _bytes_limit(self, plan: _Plan) -> int | None:
        """The voucher's whole quota: the gateway counts it over all the voucher's sessions
        and devices together."""
        return plan.bytes_total

    def _claim(self, voucher_id: int, mac: str, live: dict[str, Any] | None) -> _Plan:
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            try:
                plan = self._decide(conn, voucher_id, mac, live, now)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return plan

    def _decide(self, conn: Connection, voucher_id: int, mac: str,
                live: dict[str, Any] | None, now: dt.datetime, hops: int = 0) -> _Plan:
        v = conn.execute(
            select(Voucher.id, Voucher.state, Voucher.valid_until, Voucher.expires_at,
                   Voucher.bytes_total, Voucher.merged_into, Voucher.void_reason,
                   VoucherBatch.package_name,
                   VoucherBatch.tier, VoucherBatch.hours, VoucherBatch.data_mb,
                   VoucherBatch.devices, Package.title)
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .join(Package, VoucherBatch.package_id == Package.id)
            .where(Voucher.id == voucher_id).with_for_update()).one()
        batch = v  # the batch's copy of the package terms comes along in the same row
        bindings = {b.mac: b for b in conn.execute(
            select(VoucherDevice).where(VoucherDevice.voucher_id == voucher_id))}

        if v.state == VoucherState.VOID.value:
            if v.void_reason == "expired":  # unsold stock past its shelf life
                raise VoucherError("this voucher was not used in time", code="voucher-expired")
            raise VoucherError("this voucher was withdrawn", code="voucher-void")
        if v.state == VoucherState.MERGED.value:
            # Its remainder lives on in the voucher that absorbed it: re-entering the old code
            # on that device just reconnects it.
            if v.merged_into is not None and hops < 5:
                target = conn.execute(select(VoucherDevice.mac).where(
                    VoucherDevice.voucher_id == v.merged_into, VoucherDevice.mac == mac)).scalar()
                if target is not None:
                    return self._decide(conn, v.merged_into, mac, live, now, hops + 1)
            raise VoucherError("this voucher was already used", code="voucher-used")
        if v.state == VoucherState.NEW.value:
            if v.valid_until is not None and now >= v.valid_until:
                raise VoucherError("this voucher was not used in time", code="voucher-expired")
        else:  # active
            if v.expires_at is not None and now >= v.expires_at:
                raise VoucherError("this voucher's time is over", code="voucher-expired")
            if v.bytes_total is not None and \
                    self._used_bytes(conn, v.id, live) >= v.bytes_total:
                raise VoucherError("this voucher's data is used up", code="voucher-exhausted")

        plan = _Plan(voucher_id=v.id, package=batch.package_name, title=v.title, tier=batch.tier,
                     expires_at=v.expires_at or now, bytes_total=v.bytes_total)

        # Which device slot: already mine, a free one, or the one of a device that left.
        if mac in bindings:
            conn.execute(update(VoucherDevice).where(VoucherDevice.voucher_id == v.id,
                                                     VoucherDevice.mac == mac)
                         .values(last_seen_at=now))
        else:
            if len(bindings) >= batch.devices:
                away = self._away(conn, v.id, bindings, now)
                if not away:
                    raise VoucherError("this voucher is in use on another device",
                                       code="voucher-used")
                old = min(away, key=lambda b: b.last_seen_at)
                conn.execute(delete(VoucherDevice).where(VoucherDevice.voucher_id == v.id,
                                                         VoucherDevice.mac == old.mac))
                plan.moved_from = old.mac
                plan.moved_binding = (old.bound_at, old.last_seen_at)
                plan.kick_old = conn.execute(select(ClientSession.id).where(
                    ClientSession.mac == old.mac, ClientSession.voucher_id == v.id,
                    ClientSession.ended_at.is_(None))).first() is not None
            else:
                plan.joined = bool(bindings)
            conn.execute(insert(VoucherDevice).values(voucher_id=v.id, mac=mac, bound_at=now,
                                                      last_seen_at=now))
            plan.bound = True

        if v.state == VoucherState.NEW.value:
            expires = now + dt.timedelta(hours=batch.hours)
            total = batch.data_mb * MB if batch.data_mb else None
            merged = self._topup_source(conn, mac, v.id, now)
            if merged is not None:
                old_v, carry_bytes = merged, None
                expires += max(dt.timedelta(0), old_v.expires_at - now)
                if old_v.bytes_total is not None:
                    carry_bytes = max(0, old_v.bytes_total - self._used_bytes(conn, old_v.id, live))
                total = None if total is None or carry_bytes is None else total + carry_bytes
                res = conn.execute(update(Voucher).where(
                    Voucher.id == old_v.id, Voucher.state == VoucherState.ACTIVE.value)
                    .values(state=VoucherState.MERGED.value, merged_into=v.id))
                if res.rowcount == 1:
                    plan.merged = old_v.id
            res = conn.execute(update(Voucher).where(
                Voucher.id == v.id, Voucher.state == VoucherState.NEW.value).values(
                state=VoucherState.ACTIVE.value, first_used_at=now, expires_at=expires,
                bytes_total=total, topup_of=plan.merged))
            if res.rowcount != 1:  # pragma: no cover - impossible under the write lock
                raise VoucherError("this voucher was already used", code="voucher-used")
            plan.first_use = True
            plan.expires_at, plan.bytes_total = expires, total
        return plan

    def _away(self, conn: Connection, voucher_id: int, bindings: dict[str, Any],
              now: dt.datetime) -> list[Any]:
        """Bindings whose device may give up its place: bound a while ago, and not using
        the voucher now (no running session on it, or one without traffic lately)."""
        out = []
        for b in bindings.values():
            if now - b.bound_at < dt.timedelta(seconds=BIND_LEASE_SECONDS):
                continue
            sess = conn.execute(select(ClientSession.last_activity_at).where(
                ClientSession.mac == b.mac, ClientSession.voucher_id == voucher_id,
                ClientSession.ended_at.is_(None))).first()
            if sess is not None and now - sess.last_activity_at < dt.timedelta(seconds=AWAY_SECONDS):
                continue
            out.append(b)
        return out

    def _topup_source(self, conn: Connection, mac: str, new_id: int,
                      now: dt.datetime) -> Any | None:
        """The running single-device voucher of this device, if it has one to top up."""
        sess = conn.execute(select(ClientSession.voucher_id).where(
            ClientSession.mac == mac, ClientSession.ended_at.is_(None),
            ClientSession.voucher_id.is_not(None))).first()
        if sess is None or sess.voucher_id == new_id:
            return None
        row = conn.execute(
            select(Voucher.id, Voucher.expires_at, Voucher.bytes_total, VoucherBatch.devices)
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(Voucher.id == sess.voucher_id, Voucher.state == VoucherState.ACTIVE.value)
        ).first()
        if row is None or row.devices != 1 or row.expires_at is None or row.expires_at <= now:
            return None
        return row

    def _undo(self, plan: _Plan, mac: str) -> None:
        """The gateway refused: give the voucher back as it was."""
        try:
            with self.engine.connect() as conn:
                self._begin_write(conn)
                if plan.bound:
                    conn.execute(delete(VoucherDevice).where(
                        VoucherDevice.voucher_id == plan.voucher_id, VoucherDevice.mac == mac))
                if plan.moved_from and plan.moved_binding:
                    conn.execute(insert(VoucherDevice).values(
                        voucher_id=plan.voucher_id, mac=plan.moved_from,
                        bound_at=plan.moved_binding[0], last_seen_at=plan.moved_binding[1]))
                if plan.first_use:
                    conn.execute(update(Voucher).where(
                        Voucher.id == plan.voucher_id, Voucher.state == VoucherState.ACTIVE.value)
                        .values(state=VoucherState.NEW.value, first_used_at=None,
                                expires_at=None, bytes_total=None, topup_of=None))
                if plan.merged:
                    conn.execute(update(Voucher).where(and_(
                        Voucher.id == plan.merged, Voucher.merged_into == plan.voucher_id))
                        .values(state=VoucherState.ACTIVE.value, merged_into=None))
                conn.commit()
        except Exception:  # pragma: no cover - logged, the original error matters more
            log.exception("voucher %d: could not undo the claim", plan.voucher_id)


def voucher_state(engine: Engine, voucher_id: int) -> dict[str, Any]:
    """A voucher's state and devices (for the console and tests)."""
    with engine.connect() as conn:
        v = conn.execute(select(Voucher).where(Voucher.id == voucher_id)).first()
        if v is None:
            raise NotFound(f"no voucher {voucher_id}")
        macs = [m for (m,) in conn.execute(select(VoucherDevice.mac).where(
            VoucherDevice.voucher_id == voucher_id).order_by(VoucherDevice.bound_at))]
    return {"id": v.id, "batch_id": v.batch_id, "serial": v.serial, "state": v.state,
            "first_used_at": v.first_used_at, "expires_at": v.expires_at,
            "bytes_total": v.bytes_total, "topup_of": v.topup_of, "merged_into": v.merged_into,
            "devices": macs}


def find_voucher(engine: Engine, key: bytes, code: str) -> int | None:
    """The id of the voucher with this code (the console's lookup), or None."""
    bare = normalize_code(code)
    if bare is None:
        return None
    with engine.connect() as conn:
        return conn.execute(select(Voucher.id).where(
            Voucher.code_hash == code_hash(key, bare))).scalar()


# -- the operator console and the CLI: packages, sales, voids, expiry ------------------------
# Every function here that changes money or access takes an ``actor`` and writes the audit
# log in the same transaction (hotspot.audit).

from hotspot.audit import SYSTEM, Actor  # noqa: E402 - the console's half of this module
from hotspot.audit import record as _audit  # noqa: E402
from hotspot.audit import write as _write  # noqa: E402
from hotspot.model_operator import VoucherSale  # noqa: E402

PACKAGE_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
PACKAGE_LIMITS = {"price": (0, 100_000_000), "hours": (1, 8784), "data_mb": (0, 10_000_000),
                  "devices": (1, 16), "shelf_days": (0, 3650)}
PACKAGE_FIELDS = ("name", "title", "price", "tier", "hours", "data_mb", "devices",
                  "shelf_days", "active")


class PackageError(UsageError):
    """A package field with a bad value; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def check_package(values: dict[str, Any], tiers: Iterable[str]) -> dict[str, Any]:
    """The clean values of a package (console or CLI); raises :class:`PackageError`."""
    import re

    out: dict[str, Any] = {}
    name = values.get("name")
    if not isinstance(name, str) or not re.match(PACKAGE_NAME, name):
        raise PackageError("name", "lower-case letters, digits, - and _ (at most 32)")
    out["name"] = name
    title = values.get("title") or name
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > 40 \
            or any(ord(ch) < 32 for ch in title):
        raise PackageError("title", "1 to 40 characters")
    out["title"] = title.strip()
    for key, (lo, hi) in PACKAGE_LIMITS.items():
        v = values.get(key, 0 if key in ("data_mb", "shelf_days") else None)
        if key == "devices" and v is None:
            v = 1
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise PackageError(key, f"a whole number from {lo} to {hi}")
        out[key] = v
    tier = values.get("tier")
    if tier not in set(tiers):
        raise PackageError("tier", f"no such tier {tier!r}")
    out["tier"] = tier
    out["active"] = bool(values.get("active", True))
    return out


def _package_dict(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in PACKAGE_FIELDS + ("source",)}


def save_package(engine: Engine, values: dict[str, Any], *, tiers: Iterable[str],
                 actor: Actor, package_id: int | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> int:
    """Create (``package_id`` None) or change a package made in the console. Packages of
    the configuration file are changed in the file only. Returns the package's id."""
    clean = check_package(values, tiers)
    now = clock()
    stored = dict(clean, data_mb=clean["data_mb"] or None, shelf_days=clean["shelf_days"] or None)
    with _write(engine) as conn:
        clash = conn.execute(select(Package).where(Package.name == clean["name"])).first()
        if package_id is None:
            if clash is not None:
                raise PackageError("name", f"a package named {clean['name']!r} exists")
            res = conn.execute(insert(Package).values(**stored, source="console",
                                                      created_at=now, updated_at=now))
            pid = int(res.inserted_primary_key[0])
            _audit(conn, actor, "package.create", f"package:{pid}", after=clean, at=now)
            return pid
        row = conn.execute(select(Package).where(Package.id == package_id)).first()
        if row is None:
            raise NotFound(f"no package {package_id}")
        if row.source == "config":
            raise PackageError("name", "this package comes from the configuration file; "
                                       "change it there")
        if clash is not None and clash.id != package_id:
            raise PackageError("name", f"a package named {clean['name']!r} exists")
        before = _package_dict(row)
        conn.execute(update(Package).where(Package.id == package_id)
                     .values(**stored, updated_at=now))
        after = dict(before, **stored)
        if after != before:
            _audit(conn, actor, "package.update", f"package:{package_id}",
                   before={k: v for k, v in before.items() if after[k] != v},
                   after={k: v for k, v in after.items() if before[k] != v}, at=now)
        return package_id


def all_packages(engine: Engine) -> list[Any]:
    """Every package, on sale or not (the console's list)."""
    with engine.connect() as conn:
        return list(conn.execute(select(Package).order_by(Package.active.desc(), Package.price,
                                                          Package.name)))


def get_package(engine: Engine, package_id: int) -> Any:
    with engine.connect() as conn:
        row = conn.execute(select(Package).where(Package.id == package_id)).first()
    if row is None:
        raise NotFound(f"no package {package_id}")
    return row


class SaleError(VoucherError):
    """``voucher-sold`` (sold already), ``voucher-void``, ``voucher-used`` (cannot undo a
    sale of a used voucher), ``voucher-unknown``."""


def _sale_row(conn: Connection, voucher_id: int) -> Any:
    return conn.execute(
        select(Voucher.id, Voucher.state, Voucher.serial, Voucher.batch_id, Voucher.sold_at,
               Voucher.first_used_at, Voucher.valid_until, VoucherBatch.price,
               VoucherBatch.package_name, VoucherSale.operator, Package.title)
        .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
        .join(Package, VoucherBatch.package_id == Package.id)
        .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
        .where(Voucher.id == voucher_id)).first()


def mark_sold(engine: Engine, voucher_id: int, *, actor: Actor,
              clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any]:
    """A kasir took the cash for this voucher. Exactly once: a second mark is refused
    (``voucher-sold``, naming who sold it). A voucher already used may still be marked (the
    kasir forgot): the sale is then attributed to the kasir."""
    now = clock()
    with _write(engine) as conn:
        v = _sale_row(conn, voucher_id)
        if v is None:
            raise SaleError("no such voucher", code="voucher-unknown")
        if v.state == VoucherState.VOID.value:
            raise SaleError("this voucher was withdrawn", code="voucher-void")
        if v.sold_at is not None or v.operator is not None:
            raise SaleError(f"sold already by {v.operator or '?'}", code="voucher-sold")
        res = conn.execute(update(Voucher).where(Voucher.id == voucher_id,
                                                 Voucher.sold_at.is_(None))
                           .values(sold_at=now))
        if res.rowcount != 1:  # pragma: no cover - impossible under the write lock
            raise SaleError("sold already", code="voucher-sold")
        conn.execute(insert(VoucherSale).values(voucher_id=voucher_id, sold_at=now,
                                                operator_id=actor.id, operator=actor.name[:32],
                                                price=v.price))
        sale = {"voucher_id": voucher_id, "batch_id": v.batch_id, "serial": v.serial,
                "package": v.package_name, "title": v.title, "price": v.price, "sold_at": now,
                "used": v.first_used_at is not None}
        _audit(conn, actor, "voucher.sell", f"voucher:{voucher_id}",
               before={"sold_at": None}, after={"sold_at": now, "price": v.price,
                                                "batch": v.batch_id, "serial": v.serial}, at=now)
        return sale


def mark_batch_sold(engine: Engine, batch_id: int, first: int, last: int, *, actor: Actor,
                    clock: Callable[[], dt.datetime] = utcnow) -> tuple[int, int]:
    """Mark serials ``first``..``last`` of a batch sold (a handful sold at once, e.g. to a
    warung). Returns (marked, skipped: sold already or withdrawn)."""
    now = clock()
    if first > last:
        first, last = last, first
    with _write(engine) as conn:
        batch = conn.execute(select(VoucherBatch).where(VoucherBatch.id == batch_id)).first()
        if batch is None:
            raise NotFound(f"no batch {batch_id}")
        rows = conn.execute(select(Voucher.id, Voucher.serial, Voucher.state, Voucher.sold_at)
                            .where(Voucher.batch_id == batch_id, Voucher.serial >= first,
                                   Voucher.serial <= last).order_by(Voucher.serial)).all()
        ok = [r for r in rows if r.sold_at is None and r.state != VoucherState.VOID.value]
        for r in ok:
            conn.execute(update(Voucher).where(Voucher.id == r.id).values(sold_at=now))
        if ok:
            conn.execute(insert(VoucherSale), [
                dict(voucher_id=r.id, sold_at=now, operator_id=actor.id,
                     operator=actor.name[:32], price=batch.price) for r in ok])
            _audit(conn, actor, "voucher.sell", f"batch:{batch_id}",
                   before={"sold": 0}, after={"serials": f"{ok[0].serial}-{ok[-1].serial}",
                                              "sold": len(ok), "price_each": batch.price,
                                              "rupiah": len(ok) * batch.price}, at=now)
        return len(ok), len(rows) - len(ok)


def cancel_sale(engine: Engine, voucher_id: int, *, actor: Actor, reason: str = "",
                clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any]:
    """Undo a kasir's mark on a voucher nobody used yet (marked by mistake; the cash goes
    back). A used voucher's sale stands (void it, as a refund, instead)."""
    now = clock()
    with _write(engine) as conn:
        v = _sale_row(conn, voucher_id)
        if v is None:
            raise SaleError("no such voucher", code="voucher-unknown")
        if v.sold_at is None:
            raise SaleError("this voucher was not marked sold", code="voucher-unsold")
        if v.state != VoucherState.NEW.value:
            raise SaleError("a used or withdrawn voucher's sale cannot be undone",
                            code="voucher-used")
        conn.execute(delete(VoucherSale).where(VoucherSale.voucher_id == voucher_id))
        conn.execute(update(Voucher).where(Voucher.id == voucher_id).values(sold_at=None))
        _audit(conn, actor, "voucher.unsell", f"voucher:{voucher_id}",
               before={"sold_at": v.sold_at, "sold_by": v.operator, "price": v.price},
               after={"sold_at": None, "reason": reason[:200] or None}, at=now)
        return {"voucher_id": voucher_id, "price": v.price, "sold_by": v.operator}


def void_one(engine: Engine, voucher_id: int, *, actor: Actor, reason: str,
             clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any]:
    """Withdraw one voucher (lost card, refund), audited. Returns its state before and the
    MACs bound to it (the console disconnects them)."""
    now = clock()
    with _write(engine) as conn:
        v = conn.execute(select(Voucher).where(Voucher.id == voucher_id)).first()
        if v is None:
            raise SaleError("no such voucher", code="voucher-unknown")
        if v.state == VoucherState.VOID.value:
            raise SaleError("this voucher was withdrawn already", code="voucher-void")
        conn.execute(update(Voucher).where(Voucher.id == voucher_id).values(
            state=VoucherState.VOID.value, voided_at=now, void_reason=reason[:200] or None))
        macs = [m for (m,) in conn.execute(select(VoucherDevice.mac).where(
            VoucherDevice.voucher_id == voucher_id))]
        _audit(conn, actor, "voucher.void", f"voucher:{voucher_id}",
               before={"state": v.state, "sold_at": v.sold_at},
               after={"state": "void", "reason": reason[:200] or None}, at=now)
        return {"voucher_id": voucher_id, "state_before": v.state, "devices": macs,
                "was_sold": v.sold_at is not None}


def void_batch(engine: Engine, batch_id: int, *, actor: Actor, reason: str,
               include_sold: bool = False,
               clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any]:
    """Withdraw a batch (a lost or stolen sheet): its unsold, unused vouchers — and, with
    ``include_sold``, also the sold and running ones. Returns the counts and the MACs of
    devices on running vouchers it withdrew."""
    now = clock()
    with _write(engine) as conn:
        if conn.execute(select(VoucherBatch.id).where(VoucherBatch.id == batch_id)).first() is None:
            raise NotFound(f"no batch {batch_id}")
        rows = conn.execute(select(Voucher.id, Voucher.state, Voucher.sold_at).where(
            Voucher.batch_id == batch_id, Voucher.state.in_(
                (VoucherState.NEW.value, VoucherState.ACTIVE.value)))).all()
        chosen = [r for r in rows if include_sold or
                  (r.state == VoucherState.NEW.value and r.sold_at is None)]
        ids = [r.id for r in chosen]
        for i in range(0, len(ids), 500):
            conn.execute(update(Voucher).where(Voucher.id.in_(ids[i:i + 500])).values(
                state=VoucherState.VOID.value, voided_at=now, void_reason=reason[:200] or None))
        running = [r.id for r in chosen if r.state == VoucherState.ACTIVE.value]
        macs = [m for (m,) in conn.execute(select(VoucherDevice.mac).where(
            VoucherDevice.voucher_id.in_(running)))] if running else []
        out = {"voided": len(ids), "kept": len(rows) - len(ids),
               "sold_voided": sum(1 for r in chosen if r.sold_at is not None),
               "running_voided": len(running), "devices": macs}
        if ids:
            _audit(conn, actor, "batch.void", f"batch:{batch_id}",
                   before={"voidable": len(rows)},
                   after={"voided": len(ids), "sold_voided": out["sold_voided"],
                          "running_voided": len(running), "reason": reason[:200] or None},
                   at=now)
        return out


def expire_unsold(engine: Engine, *, actor: Actor = SYSTEM,
                  clock: Callable[[], dt.datetime] = utcnow) -> int:
    """Unsold stock past its shelf life (``valid_until``) is withdrawn (reason "expired").
    Sold vouchers are left alone: their sale stands, and the portal refuses them anyway."""
    now = clock()
    with engine.connect() as conn:  # cheap check first: most calls find nothing
        if conn.execute(select(Voucher.id).where(
                Voucher.state == VoucherState.NEW.value, Voucher.sold_at.is_(None),
                Voucher.valid_until.is_not(None), Voucher.valid_until <= now).limit(1)).first() is None:
            return 0
    with _write(engine) as conn:
        rows = conn.execute(select(Voucher.id, Voucher.batch_id).where(
            Voucher.state == VoucherState.NEW.value, Voucher.sold_at.is_(None),
            Voucher.valid_until.is_not(None), Voucher.valid_until <= now)).all()
        per_batch: dict[int, list[int]] = {}
        for r in rows:
            per_batch.setdefault(r.batch_id, []).append(r.id)
        for batch_id, ids in per_batch.items():
            for i in range(0, len(ids), 500):
                conn.execute(update(Voucher).where(Voucher.id.in_(ids[i:i + 500]),
                                                   Voucher.state == VoucherState.NEW.value)
                             .values(state=VoucherState.VOID.value, voided_at=now,
                                     void_reason="expired"))
            _audit(conn, actor, "batch.expire", f"batch:{batch_id}",
                   before={"unsold": len(ids)}, after={"expired": len(ids)}, at=now)
        return len(rows)


def create_batch_audited(engine: Engine, key: bytes, package: str | int, count: int, *,
                         actor: Actor, note: str | None = None, max_count: int = MAX_BATCH,
                         clock: Callable[[], dt.datetime] = utcnow) -> Batch:
    """:func:`create_batch` with a cap (the console's and the CLI's) and an audit entry."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= max_count:
        raise UsageError(f"count must be a whole number from 1 to {max_count}")
    batch = create_batch(engine, key, package, count, note=note, created_by=actor.name,
                         clock=clock)
    with _write(engine) as conn:
        price = conn.execute(select(VoucherBatch.price).where(
            VoucherBatch.id == batch.id)).scalar()
        _audit(conn, actor, "batch.create", f"batch:{batch.id}",
               after={"package": batch.package, "count": count, "price_each": price,
                      "note": note or None}, at=clock())
    return batch


def batches(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Batches, newest first, with how many of their vouchers are in which state."""
    with Session(engine) as conn:
        rows = conn.execute(select(VoucherBatch, Package.title)
                            .join(Package, VoucherBatch.package_id == Package.id)
                            .order_by(VoucherBatch.id.desc()).limit(limit)).all()
        counts: dict[int, dict[str, int]] = {}
        if rows:
            ids = [r.VoucherBatch.id for r in rows]
            q = (select(Voucher.batch_id, Voucher.state, Voucher.sold_at.is_not(None), func.count())
                 .where(Voucher.batch_id.in_(ids))
                 .group_by(Voucher.batch_id, Voucher.state, Voucher.sold_at.is_not(None)))
            for batch_id, st, sold, n in conn.execute(q):
                c = counts.setdefault(batch_id, {"new": 0, "sold": 0, "used": 0, "void": 0})
                if st == VoucherState.VOID.value:
                    c["void"] += n
                elif st == VoucherState.NEW.value:
                    c["sold" if sold else "new"] += n
                else:
                    c["used"] += n
    out = []
    for r in rows:
        b = r.VoucherBatch
        out.append({"id": b.id, "package": b.package_name, "title": r.title, "price": b.price,
                    "tier": b.tier, "hours": b.hours, "data_mb": b.data_mb, "devices": b.devices,
                    "count": b.count, "created_at": b.created_at, "created_by": b.created_by,
                    "note": b.note, "valid_until": b.valid_until,
                    "states": counts.get(b.id, {"new": 0, "sold": 0, "used": 0, "void": 0})})
    return out


def batch_info(engine: Engine, batch_id: int) -> dict[str, Any]:
    for b in batches_by_id(engine, [batch_id]):
        return b
    raise NotFound(f"no batch {batch_id}")


def batches_by_id(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    return [b for b in batches(engine, limit=100_000) if b["id"] in set(ids)]


def batch_vouchers(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """The vouchers of a batch (no codes: the database has none) with sale and use."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Voucher.id, Voucher.serial, Voucher.state, Voucher.sold_at,
                   Voucher.first_used_at, Voucher.expires_at, Voucher.valid_until,
                   Voucher.void_reason, VoucherSale.operator)
            .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
            .where(Voucher.batch_id == batch_id).order_by(Voucher.serial)).all()
    return [dict(r._mapping) for r in rows]


def voucher_detail(engine: Engine, voucher_id: int) -> dict[str, Any]:
    """A voucher with its batch's terms, its sale and its devices (the console's lookup)."""
    with engine.connect() as conn:
        r = conn.execute(
            select(Voucher.id, Voucher.serial, Voucher.batch_id, Voucher.state,
                   Voucher.sold_at, Voucher.first_used_at, Voucher.expires_at,
                   Voucher.valid_until, Voucher.bytes_total, Voucher.void_reason,
                   Voucher.merged_into, VoucherBatch.package_name, VoucherBatch.price,
                   VoucherBatch.hours, VoucherBatch.data_mb,
                   VoucherBatch.devices.label("devices_limit"),
                   VoucherSale.operator.label("sold_by"))
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .outerjoin(VoucherSale, VoucherSale.voucher_id == Voucher.id)
            .where(Voucher.id == voucher_id)).first()
        if r is None:
            raise NotFound(f"no voucher {voucher_id}")
        macs = [m for (m,) in conn.execute(select(VoucherDevice.mac).where(
            VoucherDevice.voucher_id == voucher_id).order_by(VoucherDevice.bound_at))]
        used = conn.execute(select(func.coalesce(func.sum(
            ClientSession.bytes_down + ClientSession.bytes_up), 0))
            .where(ClientSession.voucher_id == voucher_id)).scalar() or 0
    return dict(r._mapping, devices=macs, bytes_used=int(used))


def get_package_title(engine: Engine, batch_id: int) -> str | None:
    """The title of a batch's package (what the price list calls it)."""
    with engine.connect() as conn:
        return conn.execute(select(Package.title).join(
            VoucherBatch, VoucherBatch.package_id == Package.id).where(
            VoucherBatch.id == batch_id)).scalar()
