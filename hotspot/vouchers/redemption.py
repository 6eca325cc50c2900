"""Redeeming a code on a device, exactly once, and the brake on guessing.

Redemption (:meth:`VoucherService.redeem`)
    One database write transaction (``BEGIN IMMEDIATE`` on SQLite, a row lock elsewhere)
    decides, and a conditional ``UPDATE … WHERE state = 'new'`` with its row count claims
    the first use: two phones with the same code at the same moment are serialized; the
    first wins, the second finds the voucher bound to a device that was bound seconds ago and
    is told "already in use" (or joins, while the package allows more devices).
    Re-entering a running code on a device that uses it re-authorizes it (after an idle
    timeout, or at a new address). On a *new* MAC a code in use moves there only when the
    device is the owner's (its device cookie names the identity that holds the code: the
    same phone under a new random MAC, at once), or when the owner has been gone for
    ``takeover_seconds`` (default 12 h) — whoever merely saw a running code cannot take it.
    Every move is recorded (:class:`hotspot.model.VoucherMove`) and shown to the owner.
    A second code on a device that runs a single-device voucher tops it up: the remaining
    time and data of the first are carried into the second (time adds; data adds; a package
    without a data quota makes the sum unlimited), and the first is marked ``merged``.
    Then the gateway is asked to authorize; if it refuses (a blocked device, …) the claim
    is undone, so a refused phone does not burn a voucher.

The brake on guessing (issue #10) has three sliding windows, all in the database so that they
hold across gunicorn workers: per MAC (the old one, with a cool-down), per address (rotating
MACs on one address does not reset it) and gateway-wide (many addresses), the last one short
so that it never keeps the village's paying customers out for long.

Kernel-free: the gateway is reached only through an object with ``call(op, **args)`` (a
:class:`hotspot.control.ControlClient`, or a fake in tests).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Engine, Select, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from hotspot.config import Config
from hotspot.control import ControlTimeout
from hotspot.errors import ErrorCode, HotspotError
from hotspot.mac import normalize_mac
from hotspot.model import (
    ClientSession,
    DeviceIdentityMac,
    Package,
    RedeemAttempt,
    RedeemFailure,
    Voucher,
    VoucherBatch,
    VoucherDevice,
    VoucherMove,
    VoucherState,
)
from hotspot.timeutil import iso, parse_utc, utcnow
from hotspot.units import MB
from hotspot.vouchers.codes import code_hash, normalize_code
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.lookup import recorded_bytes

log = logging.getLogger(__name__)


# A binding younger than this is never displaced (two phones racing for one code).
BIND_LEASE_SECONDS = 60
# A device that holds a voucher and has been gone (no traffic, no visit) for this long
# gives its place to another device: the default of ``portal.voucher_takeover_hours``.
TAKEOVER_SECONDS = 12 * 3600
# One tap without the code (:meth:`VoucherService.resume`) takes a voucher from another MAC
# of the same device only when that MAC has been quiet this long: a phone under a new random
# MAC has stopped sending under its old one, a second phone with a copied device cookie has
# not (its owner is still online).
RESUME_QUIET_SECONDS = 30


class Gateway(Protocol):
    def call(self, op: str, **args: Any) -> Any: ...


class BrakeScope(enum.StrEnum):
    DEVICE = "device"  # this MAC
    ADDRESS = "address"  # this IP address, whatever the MAC
    GATEWAY = "gateway"  # every address together


class RateLimited(VoucherError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after: int, scope: BrakeScope = BrakeScope.DEVICE):
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope


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
    online_seconds_left: int | None = None  # an online-time voucher: as last written


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
    moved_binding: tuple[dt.datetime, dt.datetime, str | None] | None = None
    move_id: int | None = None
    kick_old: bool = False
    merged: int | None = None
    online_total: int | None = None  # an online-time voucher's seconds, and those used
    online_used: int = 0


class VoucherService:
    """Redeems codes for the portal. Thread-safe (state lives in the database)."""

    def __init__(
        self,
        engine: Engine,
        key: bytes,
        gateway: Gateway,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        attempts: int = 5,
        window_seconds: int = 60,
        cooldown_seconds: int = 300,
        address_attempts: int = 20,
        address_window_seconds: int = 600,
        gateway_attempts: int = 60,
        gateway_window_seconds: int = 60,
        takeover_seconds: int = TAKEOVER_SECONDS,
    ):
        self.engine = engine
        self.key = key
        self.gateway = gateway
        self.clock = clock
        self.attempts = attempts
        self.window = dt.timedelta(seconds=window_seconds)
        self.cooldown = dt.timedelta(seconds=cooldown_seconds)
        self.address_attempts = address_attempts
        self.address_window = dt.timedelta(seconds=address_window_seconds)
        self.gateway_attempts = gateway_attempts
        self.gateway_window = dt.timedelta(seconds=gateway_window_seconds)
        self.takeover = dt.timedelta(seconds=takeover_seconds)
        self.sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def from_config(
        cls, config: Config, engine: Engine, key: bytes, gateway: Gateway, **kw: Any
    ) -> VoucherService:
        p = config.portal
        return cls(
            engine,
            key,
            gateway,
            attempts=p.voucher_attempts,
            window_seconds=p.voucher_window_seconds,
            cooldown_seconds=p.voucher_cooldown_seconds,
            address_attempts=p.voucher_address_attempts,
            address_window_seconds=p.voucher_address_window_seconds,
            gateway_attempts=p.voucher_gateway_attempts,
            gateway_window_seconds=p.voucher_gateway_window_seconds,
            takeover_seconds=p.voucher_takeover_hours * 3600,
            **kw,
        )

    # -- the brake on guessing ----------------------------------------------------------------

    def retry_after(self, client: str, ip: str | None = None) -> int:
        """Seconds this device must wait before its next attempt (0 = may try now)."""
        return self.brake(client, ip)[0]

    def brake(self, mac: str, ip: str | None = None) -> tuple[int, BrakeScope]:
        """(seconds to wait, which brake) for a device at an address; (0, …) = may try now.
        The longest wait of the three brakes wins."""
        now = self.clock()
        waits: list[tuple[int, BrakeScope]] = []
        with self.engine.connect() as conn:
            until = conn.execute(
                select(RedeemAttempt.blocked_until).where(RedeemAttempt.client == mac)
            ).scalar()
            if until is not None and until > now:
                waits.append((_seconds(until - now), BrakeScope.DEVICE))
            if ip is not None:
                oldest = self._window_full(
                    conn, now, self.address_window, self.address_attempts, ip
                )
                if oldest is not None:
                    waits.append((_seconds(oldest + self.address_window - now), BrakeScope.ADDRESS))
            oldest = self._window_full(conn, now, self.gateway_window, self.gateway_attempts)
            if oldest is not None:
                waits.append((_seconds(oldest + self.gateway_window - now), BrakeScope.GATEWAY))
        return max(waits, default=(0, BrakeScope.DEVICE), key=lambda w: w[0])

    @staticmethod
    def _window_full(
        conn: Connection, now: dt.datetime, window: dt.timedelta, limit: int, ip: str | None = None
    ) -> dt.datetime | None:
        """A sliding window of wrong codes (of one address, or of all): when it holds
        ``limit`` of them, the time of the ``limit``-th newest — the window frees a place when
        that one is ``window`` old. None while there is room."""
        q = select(RedeemFailure.at).where(RedeemFailure.at > now - window)
        if ip is not None:
            q = q.where(RedeemFailure.ip == ip)
        return conn.execute(q.order_by(RedeemFailure.at.desc()).offset(limit - 1).limit(1)).scalar()

    def _failed(self, client: str, ip: str | None = None) -> None:
        """Count a wrong code; the ``attempts``-th within the window starts the device's
        cool-down, and the per-address and gateway-wide windows get one more row."""
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            if ip is not None:
                conn.execute(insert(RedeemFailure).values(at=now, ip=ip, mac=client))
                # What an operator looks for to block a guesser (the brakes keep this rare).
                log.info("wrong voucher code from %s at %s", client, ip)
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
                conn.execute(
                    update(RedeemAttempt).where(RedeemAttempt.client == client).values(**values)
                )
            conn.commit()

    # -- the transaction ----------------------------------------------------------------------

    def _begin_write(self, conn: Connection) -> None:
        """Take the database's write lock first, so that everything read afterwards in this
        transaction stays true until commit (SQLite: one writer at a time)."""
        if self.sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def redeem(
        self,
        code: str,
        *,
        ip: str,
        mac: str,
        live_session: dict[str, Any] | None = None,
        device_id: str | None = None,
    ) -> Redemption:
        """Use ``code`` on the device ``mac`` at ``ip`` (both from the gateway, never from the
        request). ``live_session`` is the gateway's current description of the device's
        session, if the caller has it (its byte counts are fresher than the database's).
        ``device_id`` is the device's identity (:mod:`hotspot.identity`, from its signed
        device cookie), if it has one: the owner's own device takes its code back at once.
        Raises :class:`VoucherError` (a code the user gets a message for), or what the
        gateway raised (a blocked device, the gateway unreachable)."""
        mac = normalize_mac(mac)
        wait, scope = self.brake(mac, ip)
        if wait:
            if scope is BrakeScope.GATEWAY:
                log.warning("voucher guessing gateway-wide: %s at %s waits %d s", mac, ip, wait)
            raise RateLimited(f"too many wrong codes ({scope}); wait {wait} s", wait, scope)
        bare = normalize_code(code)
        if bare is None:
            self._failed(mac, ip)
            raise VoucherError("not a voucher code", code=ErrorCode.VOUCHER_UNKNOWN)
        digest = code_hash(self.key, bare)
        with self.engine.connect() as conn:
            found = conn.execute(select(Voucher.id).where(Voucher.code_hash == digest)).scalar()
        if found is None:
            self._failed(mac, ip)
            raise VoucherError("no such voucher", code=ErrorCode.VOUCHER_UNKNOWN)
        return self._use(found, ip, mac, live_session, device_id)

    def resume(
        self, *, ip: str, mac: str, device_id: str, live_session: dict[str, Any] | None = None
    ) -> Redemption:
        """One tap, no code: the owner's device (its identity, from the signed device cookie)
        under a new MAC takes back the voucher it holds. Nothing to guess, so no brake."""
        mac = normalize_mac(mac)
        found = held_voucher(self.engine, device_id, self.clock())
        if found is None:
            raise VoucherError(
                "this device holds no running voucher", code=ErrorCode.VOUCHER_UNKNOWN
            )
        self._check_owner_quiet(found.id, mac, device_id)
        return self._use(found.id, ip, mac, live_session, device_id)

    def _check_owner_quiet(self, voucher_id: int, mac: str, device_id: str) -> None:
        """Refuse a one-tap resume while another MAC of this identity still uses the voucher
        (it sent within :data:`RESUME_QUIET_SECONDS`, by the gateway's live counters): that is
        a copied device cookie on a second phone, not the owner under a new MAC. The
        package's devices limit still lets a second device join by typing the code."""
        its_macs = select(DeviceIdentityMac.mac).where(DeviceIdentityMac.identity_id == device_id)
        with self.engine.connect() as conn:
            others = list(
                conn.execute(
                    select(ClientSession.mac).where(
                        ClientSession.voucher_id == voucher_id,
                        ClientSession.ended_at.is_(None),
                        ClientSession.mac != mac,
                        or_(
                            ClientSession.mac.in_(its_macs),
                            ClientSession.mac.in_(
                                select(VoucherDevice.mac).where(
                                    VoucherDevice.voucher_id == voucher_id,
                                    VoucherDevice.device_id == device_id,
                                )
                            ),
                        ),
                    )
                ).scalars()
            )
        now = self.clock()
        for other in others:
            try:
                sess = self.gateway.call("client", mac=other).get("session") or {}
            except HotspotError:
                continue
            last, started = sess.get("last_activity_at"), sess.get("started_at")
            if not last or last == started:
                continue  # no traffic since it started
            quiet = now - parse_utc(last)
            if quiet < dt.timedelta(seconds=RESUME_QUIET_SECONDS):
                log.warning(
                    "voucher %d: one-tap resume by %s refused: %s (same device cookie) is "
                    "still online",
                    voucher_id,
                    mac,
                    other,
                )
                raise VoucherError(
                    "this voucher is in use on another device", code=ErrorCode.VOUCHER_USED
                )

    def _use(
        self,
        found: int,
        ip: str,
        mac: str,
        live_session: dict[str, Any] | None,
        device_id: str | None,
    ) -> Redemption:
        plan = self._claim(found, mac, live_session, device_id)
        try:
            session = self.gateway.call(
                "authorize",
                ip=ip,
                tier=plan.tier,
                source="voucher",
                expires_at=iso(plan.expires_at),
                bytes_limit=self._bytes_limit(plan),
                voucher_id=plan.voucher_id,
            )
        except ControlTimeout:
            # The gateway took the authorize and may still carry it out (it was slower than
            # the portal waits): the claim stands. Undone, a session the gateway then opened
            # ran on a code still "new" — an hour for nothing, and the code sold again (the
            # soak's busy pages). Kept, the villager's next try with the same code reconnects.
            log.warning(
                "voucher %d: the gateway did not answer in time; claim kept", plan.voucher_id
            )
            raise
        except BaseException:
            self._undo(plan, mac)
            raise
        if plan.kick_old and plan.moved_from:
            try:
                self.gateway.call("deauthorize", mac=plan.moved_from, reason="replaced")
            except HotspotError as exc:  # it left by itself meanwhile: fine
                log.info(
                    "voucher %d: old device %s: %s", plan.voucher_id, plan.moved_from, exc.message
                )
        log.info(
            "voucher %d used by %s at %s%s%s%s",
            plan.voucher_id,
            mac,
            ip,
            " (first use)" if plan.first_use else "",
            f" (moved from {plan.moved_from})" if plan.moved_from else "",
            f" (topped up voucher {plan.merged})" if plan.merged else "",
        )
        return Redemption(
            plan.voucher_id,
            plan.package,
            plan.title,
            plan.tier,
            # The gateway's: a clock step between the claim and the authorize moved the
            # voucher's end, and the session's is that (docs/reliability.md).
            parse_utc(session["expires_at"]) if session.get("expires_at") else plan.expires_at,
            self._bytes_limit(plan),
            session,
            first_use=plan.first_use,
            joined=plan.joined,
            moved_from=plan.moved_from,
            topped_up=plan.merged,
            online_seconds_left=(
                None if plan.online_total is None else max(0, plan.online_total - plan.online_used)
            ),
        )

    def _used_bytes(
        self, conn: Connection, voucher_id: int, live: dict[str, Any] | None = None
    ) -> int:
        used = recorded_bytes(conn, voucher_id)
        if live and live.get("voucher_id") == voucher_id and live.get("id") is not None:
            stored = (
                conn.execute(
                    select(ClientSession.bytes_down + ClientSession.bytes_up).where(
                        ClientSession.id == live["id"]
                    )
                ).scalar()
                or 0
            )
            fresh = int(live.get("bytes_down") or 0) + int(live.get("bytes_up") or 0)
            used += max(0, fresh - stored)
        return int(used)

    def _bytes_limit(self, plan: _Plan) -> int | None:
        """The voucher's whole quota: the gateway counts it over all the voucher's sessions
        and devices together."""
        return plan.bytes_total

    def _claim(
        self, voucher_id: int, mac: str, live: dict[str, Any] | None, device_id: str | None
    ) -> _Plan:
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            try:
                plan = self._decide(conn, voucher_id, mac, live, now, device_id=device_id)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return plan

    def _decide(
        self,
        conn: Connection,
        voucher_id: int,
        mac: str,
        live: dict[str, Any] | None,
        now: dt.datetime,
        hops: int = 0,
        device_id: str | None = None,
    ) -> _Plan:
        v = conn.execute(
            select(
                Voucher.id,
                Voucher.state,
                Voucher.valid_until,
                Voucher.expires_at,
                Voucher.bytes_total,
                Voucher.online_seconds_total,
                Voucher.online_seconds_used,
                Voucher.merged_into,
                Voucher.void_reason,
                VoucherBatch.package_name,
                VoucherBatch.tier,
                VoucherBatch.hours,
                VoucherBatch.online_minutes,
                VoucherBatch.data_mb,
                VoucherBatch.devices,
                Package.title,
            )
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .join(Package, VoucherBatch.package_id == Package.id)
            .where(Voucher.id == voucher_id)
            .with_for_update()
        ).one()
        batch = v  # the batch's copy of the package terms comes along in the same row
        bindings = {
            b.mac: b
            for b in conn.execute(
                select(VoucherDevice).where(VoucherDevice.voucher_id == voucher_id)
            )
        }

        if v.state == VoucherState.VOID.value:
            if v.void_reason == "expired":  # unsold stock past its shelf life
                raise VoucherError(
                    "this voucher was not used in time", code=ErrorCode.VOUCHER_EXPIRED
                )
            raise VoucherError("this voucher was withdrawn", code=ErrorCode.VOUCHER_VOID)
        if v.state == VoucherState.MERGED.value:
            # Its remainder lives on in the voucher that absorbed it: re-entering the old code
            # on that device just reconnects it.
            if v.merged_into is not None and hops < 5:
                target = conn.execute(
                    select(VoucherDevice.mac).where(
                        VoucherDevice.voucher_id == v.merged_into, VoucherDevice.mac == mac
                    )
                ).scalar()
                if target is not None:
                    return self._decide(
                        conn, v.merged_into, mac, live, now, hops + 1, device_id=device_id
                    )
            raise VoucherError("this voucher was already used", code=ErrorCode.VOUCHER_USED)
        if v.state == VoucherState.NEW.value:
            if v.valid_until is not None and now >= v.valid_until:
                raise VoucherError(
                    "this voucher was not used in time", code=ErrorCode.VOUCHER_EXPIRED
                )
        else:  # active
            if v.expires_at is not None and now >= v.expires_at:
                raise VoucherError("this voucher's time is over", code=ErrorCode.VOUCHER_EXPIRED)
            if v.bytes_total is not None and self._used_bytes(conn, v.id, live) >= v.bytes_total:
                raise VoucherError(
                    "this voucher's data is used up", code=ErrorCode.VOUCHER_EXHAUSTED
                )
            if (
                v.online_seconds_total is not None
                and v.online_seconds_used >= v.online_seconds_total
            ):
                raise VoucherError(
                    "this voucher's online time is used up", code=ErrorCode.VOUCHER_TIME_USED
                )

        plan = _Plan(
            voucher_id=v.id,
            package=batch.package_name,
            title=v.title,
            tier=batch.tier,
            expires_at=v.expires_at or now,
            bytes_total=v.bytes_total,
            online_total=v.online_seconds_total,
            online_used=v.online_seconds_used or 0,
        )

        # Which device slot: already mine, a free one, or the one of a device that left.
        if mac in bindings:
            conn.execute(
                update(VoucherDevice)
                .where(VoucherDevice.voucher_id == v.id, VoucherDevice.mac == mac)
                .values(last_seen_at=now, device_id=bindings[mac].device_id or device_id)
            )
        else:
            mine = self._same_device(conn, bindings, device_id)
            if mine is None and len(bindings) >= batch.devices:
                away = self._away(conn, v.id, bindings, now)
                if not away:
                    raise VoucherError(
                        "this voucher is in use on another device", code=ErrorCode.VOUCHER_USED
                    )
                mine_or_away, same = min(away, key=lambda b: b.last_seen_at), False
            else:
                mine_or_away, same = mine, True
            if mine_or_away is not None:
                old = mine_or_away
                conn.execute(
                    delete(VoucherDevice).where(
                        VoucherDevice.voucher_id == v.id, VoucherDevice.mac == old.mac
                    )
                )
                plan.moved_from = old.mac
                plan.moved_binding = (old.bound_at, old.last_seen_at, old.device_id)
                plan.move_id = conn.execute(
                    insert(VoucherMove)
                    .values(
                        voucher_id=v.id,
                        at=now,
                        from_mac=old.mac,
                        from_device=old.device_id,
                        to_mac=mac,
                        same_device=same,
                    )
                    .returning(VoucherMove.id)
                ).scalar_one()
                plan.kick_old = (
                    conn.execute(
                        select(ClientSession.id).where(
                            ClientSession.mac == old.mac,
                            ClientSession.voucher_id == v.id,
                            ClientSession.ended_at.is_(None),
                        )
                    ).first()
                    is not None
                )
            else:
                plan.joined = bool(bindings)
            conn.execute(
                insert(VoucherDevice).values(
                    voucher_id=v.id, mac=mac, bound_at=now, last_seen_at=now, device_id=device_id
                )
            )
            plan.bound = True

        if v.state == VoucherState.NEW.value:
            # An online-time voucher's hours are its validity window (valid_days × 24).
            expires = now + dt.timedelta(hours=batch.hours)
            total = batch.data_mb * MB if batch.data_mb else None
            online = batch.online_minutes * 60 if batch.online_minutes else None
            merged = self._topup_source(conn, mac, v.id, now)
            if merged is not None and (merged.online_seconds_total is None) != (online is None):
                # Hours and online time are different clocks: adding one to the other would
                # be a guess at a rate of exchange. Refused; after a disconnect it is used on
                # its own (docs/operator-guide.md).
                raise VoucherError(
                    "an hours voucher and an online-time voucher do not add up",
                    code=ErrorCode.VOUCHER_TOPUP_MIXED,
                )
            if merged is not None:
                old_v, carry_bytes = merged, None
                if online is None:
                    expires += max(dt.timedelta(0), old_v.expires_at - now)
                else:
                    # Online time adds up; the validity ends at the later of the two ends.
                    online += max(0, old_v.online_seconds_total - old_v.online_seconds_used)
                    expires = max(expires, old_v.expires_at)
                if old_v.bytes_total is not None:
                    carry_bytes = max(0, old_v.bytes_total - self._used_bytes(conn, old_v.id, live))
                total = None if total is None or carry_bytes is None else total + carry_bytes
                res = conn.execute(
                    update(Voucher)
                    .where(Voucher.id == old_v.id, Voucher.state == VoucherState.ACTIVE.value)
                    .values(state=VoucherState.MERGED.value, merged_into=v.id)
                )
                if res.rowcount == 1:
                    plan.merged = old_v.id
            res = conn.execute(
                update(Voucher)
                .where(Voucher.id == v.id, Voucher.state == VoucherState.NEW.value)
                .values(
                    state=VoucherState.ACTIVE.value,
                    first_used_at=now,
                    expires_at=expires,
                    bytes_total=total,
                    online_seconds_total=online,
                    online_seconds_used=0,
                    topup_of=plan.merged,
                )
            )
            if res.rowcount != 1:  # pragma: no cover - impossible under the write lock
                raise VoucherError("this voucher was already used", code=ErrorCode.VOUCHER_USED)
            plan.first_use = True
            plan.expires_at, plan.bytes_total = expires, total
            plan.online_total, plan.online_used = online, 0
        return plan

    @staticmethod
    def _same_device(
        conn: Connection, bindings: dict[str, Any], device_id: str | None
    ) -> Any | None:
        """The binding of this very device under another MAC: its identity (device cookie)
        is the one that redeemed there, or the one that MAC belongs to."""
        if device_id is None or not bindings:
            return None
        for b in bindings.values():
            if b.device_id == device_id:
                return b
        linked = conn.execute(
            select(DeviceIdentityMac.mac).where(
                DeviceIdentityMac.mac.in_(list(bindings)),
                DeviceIdentityMac.identity_id == device_id,
            )
        ).scalar()
        return bindings.get(linked) if linked is not None else None

    def _away(
        self, conn: Connection, voucher_id: int, bindings: dict[str, Any], now: dt.datetime
    ) -> list[Any]:
        """Bindings whose device may give up its place to another device: gone for the
        takeover time — no traffic on the voucher and no visit to the portal with it."""
        out = []
        for b in bindings.values():
            if now - b.bound_at < dt.timedelta(seconds=BIND_LEASE_SECONDS):
                continue
            active = conn.execute(
                select(func.max(ClientSession.last_activity_at)).where(
                    ClientSession.mac == b.mac, ClientSession.voucher_id == voucher_id
                )
            ).scalar()
            last = max(t for t in (b.last_seen_at, active) if t is not None)
            if now - last < self.takeover:
                continue
            out.append(b)
        return out

    def _topup_source(
        self, conn: Connection, mac: str, new_id: int, now: dt.datetime
    ) -> Any | None:
        """The running single-device voucher of this device, if it has one to top up."""
        sess = conn.execute(
            select(ClientSession.voucher_id).where(
                ClientSession.mac == mac,
                ClientSession.ended_at.is_(None),
                ClientSession.voucher_id.is_not(None),
            )
        ).first()
        if sess is None or sess.voucher_id == new_id:
            return None
        row = conn.execute(
            select(
                Voucher.id,
                Voucher.expires_at,
                Voucher.bytes_total,
                Voucher.online_seconds_total,
                Voucher.online_seconds_used,
                VoucherBatch.devices,
            )
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(Voucher.id == sess.voucher_id, Voucher.state == VoucherState.ACTIVE.value)
        ).first()
        if row is None or row.devices != 1 or row.expires_at is None or row.expires_at <= now:
            return None
        if (
            row.online_seconds_total is not None
            and row.online_seconds_used >= row.online_seconds_total
        ):
            return None  # its online time is used up: nothing to carry
        return row

    def _undo(self, plan: _Plan, mac: str) -> None:
        """The gateway refused: give the voucher back as it was."""
        try:
            with self.engine.connect() as conn:
                self._begin_write(conn)
                if plan.bound:
                    conn.execute(
                        delete(VoucherDevice).where(
                            VoucherDevice.voucher_id == plan.voucher_id, VoucherDevice.mac == mac
                        )
                    )
                if plan.moved_from and plan.moved_binding:
                    conn.execute(
                        insert(VoucherDevice).values(
                            voucher_id=plan.voucher_id,
                            mac=plan.moved_from,
                            bound_at=plan.moved_binding[0],
                            last_seen_at=plan.moved_binding[1],
                            device_id=plan.moved_binding[2],
                        )
                    )
                if plan.move_id is not None:
                    conn.execute(delete(VoucherMove).where(VoucherMove.id == plan.move_id))
                if plan.first_use:
                    conn.execute(
                        update(Voucher)
                        .where(
                            Voucher.id == plan.voucher_id,
                            Voucher.state == VoucherState.ACTIVE.value,
                        )
                        .values(
                            state=VoucherState.NEW.value,
                            first_used_at=None,
                            expires_at=None,
                            bytes_total=None,
                            online_seconds_total=None,
                            topup_of=None,
                        )
                    )
                if plan.merged:
                    conn.execute(
                        update(Voucher)
                        .where(
                            and_(Voucher.id == plan.merged, Voucher.merged_into == plan.voucher_id)
                        )
                        .values(state=VoucherState.ACTIVE.value, merged_into=None)
                    )
                conn.commit()
        except Exception:  # pragma: no cover - logged, the original error matters more
            log.exception("voucher %d: could not undo the claim", plan.voucher_id)


def _seconds(delta: dt.timedelta) -> int:
    """A wait in whole seconds, rounded up, at least 1."""
    return max(1, int(delta.total_seconds() + 0.999))


def moved_away(
    engine: Engine, *, mac: str | None, device_id: str | None, since: dt.datetime
) -> dt.datetime | None:
    """When a voucher of this device (by MAC or by device identity) last went to another
    device since ``since`` — what its owner is told on the status page. None: it did not."""
    if not mac and not device_id:
        return None
    params = {"mac": normalize_mac(mac) if mac else None, "device": device_id, "since": since}
    with engine.connect() as conn:
        return conn.execute(_moved_statement(bool(mac), bool(device_id)), params).scalar()


@functools.cache
def _moved_statement(by_mac: bool, by_device: bool) -> Select[dt.datetime]:
    """The query of :func:`moved_away`, built once per shape: every splash and status page
    asks it (building a statement costs a page more CPU than running it)."""
    who = []
    if by_mac:
        who.append(VoucherMove.from_mac == bindparam("mac"))
    if by_device:
        who.append(VoucherMove.from_device == bindparam("device"))
    return select(func.max(VoucherMove.at)).where(
        or_(*who), VoucherMove.same_device.is_(False), VoucherMove.at >= bindparam("since")
    )


class Held(NamedTuple):
    id: int
    title: str  # its package's
    expires_at: dt.datetime


def held_voucher(engine: Engine, device_id: str | None, now: dt.datetime) -> Held | None:
    """The running voucher a device identity holds — bound by that identity, or to one of its
    MACs — that ends last, of a package that lets its devices resume (``auto_resume``);
    None if it holds none."""
    if not device_id:
        return None
    with engine.connect() as conn:
        row = conn.execute(_held_statement(), {"device_id": device_id, "now": now}).first()
    return Held(int(row.id), str(row.title), row.expires_at) if row is not None else None


@functools.cache
def _held_statement() -> Select[int, str, dt.datetime | None]:
    """The query of :func:`held_voucher`, built once (every splash of a device with a
    cookie asks it)."""
    its_macs = select(DeviceIdentityMac.mac).where(
        DeviceIdentityMac.identity_id == bindparam("device_id")
    )
    return (
        select(Voucher.id, Package.title, Voucher.expires_at)
        .join(VoucherDevice, VoucherDevice.voucher_id == Voucher.id)
        .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
        .join(Package, VoucherBatch.package_id == Package.id)
        .where(
            or_(VoucherDevice.device_id == bindparam("device_id"), VoucherDevice.mac.in_(its_macs)),
            Voucher.state == VoucherState.ACTIVE.value,
            Voucher.expires_at > bindparam("now"),
            or_(
                Voucher.online_seconds_total.is_(None),
                Voucher.online_seconds_used < Voucher.online_seconds_total,
            ),
            Package.auto_resume.is_(True),
        )
        .order_by(Voucher.expires_at.desc())
        .limit(1)
    )
